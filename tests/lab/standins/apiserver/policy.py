"""PodDisruptionBudget arithmetic, shared by eviction (API server) and the disruption
controller (controller-manager stand-in)."""

from __future__ import annotations

import math

from .selectors import match_label_selector


def pod_ready(pod: dict) -> bool:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _int_or_percent(value, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value)


def matching_pods(pdb: dict, pods: list[dict]) -> list[dict]:
    sel = pdb.get("spec", {}).get("selector")
    ns = pdb["metadata"].get("namespace")
    return [
        p
        for p in pods
        if p["metadata"].get("namespace") == ns
        and sel is not None
        and match_label_selector(sel, p["metadata"].get("labels"))
    ]


def compute_status(pdb: dict, pods: list[dict], owners_scale=None) -> dict:
    """status.{currentHealthy, desiredHealthy, disruptionsAllowed, expectedPods}.

    expectedPods is the pod count (upstream uses the controllers' scale; both agree for the
    lab's workloads, which are created whole).
    """
    mine = [
        p
        for p in matching_pods(pdb, pods)
        if not p["metadata"].get("deletionTimestamp")
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]
    expected = len(mine) if owners_scale is None else owners_scale(pdb, mine)
    healthy = sum(1 for p in mine if pod_ready(p))
    spec = pdb.get("spec", {})
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _int_or_percent(spec["maxUnavailable"], expected, True))
    elif spec.get("minAvailable") is not None:
        desired = _int_or_percent(spec["minAvailable"], expected, True)
    else:
        desired = expected
    allowed = max(0, healthy - desired)
    return {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "expectedPods": expected,
        "observedGeneration": pdb.get("metadata", {}).get("generation", 1),
    }
