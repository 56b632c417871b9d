"""PodDisruptionBudget arithmetic, shared by eviction (API server) and the disruption
controller (controller-manager stand-in).

Eviction decides from the budget's stored status, as upstream's eviction REST does
(kubernetes pkg/registry/core/pod/storage/eviction.go): whatever the disruption controller
or an earlier eviction wrote there, valid only when its observedGeneration has caught up
with the budget's generation."""

from __future__ import annotations

import math

from . import errors
from .selectors import match_label_selector

# The disruption controller forgets an eviction it has not seen carried out after this
# long (upstream's DeletionTimeout), and counts the pod as healthy again.
DELETION_TIMEOUT = 120
# Evictions the disruption controller has not yet confirmed, beyond which the eviction API
# refuses more (upstream's MaxDisruptedPodSize).
MAX_DISRUPTED_PODS = 2000
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


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


def ignores_budgets(pod: dict) -> bool:
    """Evicted without consulting any budget: finished, not started yet, or going."""
    phase = pod.get("status", {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(
        pod["metadata"].get("deletionTimestamp")
    )


def deletion_pins_version(pod: dict) -> bool:
    """A budget-free eviction of this pod must not race with it becoming Ready: true for
    every pod that is neither finished nor going."""
    phase = pod.get("status", {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _valid_selector(selector: dict | None) -> bool:
    for e in (selector or {}).get("matchExpressions") or []:
        op, values = e.get("operator"), e.get("values") or []
        if not e.get("key") or op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
        if (op in ("In", "NotIn")) != bool(values):
            return False
    return True


def budgets_for(pod: dict, pdbs: list[dict]) -> list[dict]:
    """The budgets of the pod's namespace whose selector selects it; a budget with an
    invalid selector selects nothing."""
    return [
        pdb
        for pdb in pdbs
        if _valid_selector(pdb.get("spec", {}).get("selector")) and matching_pods(pdb, [pod])
    ]


def unhealthy_pod_may_go(pdb: dict) -> bool:
    """For a pod that is not Ready: evicted without spending the budget? AlwaysAllow says
    always; IfHealthyBudget (also when unset) only while the stored status shows the
    application undisrupted."""
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    status = pdb.get("status") or {}
    desired = int(status.get("desiredHealthy", 0))
    return int(status.get("currentHealthy", 0)) >= desired > 0


def budget_busy(name: str) -> errors.StatusError:
    """429: the budget's status cannot be trusted yet; clients wait 10 s and retry."""
    return errors.StatusError(
        429,
        "TooManyRequests",
        VIOLATION,
        {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {name} is still being processed by "
                    "the server.",
                }
            ],
            "retryAfterSeconds": 10,
        },
    )


def _forbidden(name: str, why: str) -> errors.StatusError:
    return errors.StatusError(
        403,
        "Forbidden",
        f'poddisruptionbudget.policy "{name}" is forbidden: {why}',
        {"name": name, "group": "policy", "kind": "poddisruptionbudget"},
    )


def disruption_allowed_condition(status: dict, now: str) -> list[dict]:
    """status.conditions with DisruptionAllowed set from disruptionsAllowed; its
    lastTransitionTime moves only when its status does."""
    allowed = int(status.get("disruptionsAllowed", 0)) > 0
    wanted = {
        "type": "DisruptionAllowed",
        "status": "True" if allowed else "False",
        "reason": "SufficientPods" if allowed else "InsufficientPods",
        "message": "",
        "observedGeneration": status.get("observedGeneration", 0),
    }
    others, old = [], None
    for c in status.get("conditions") or []:
        if c.get("type") == "DisruptionAllowed":
            old = c
        else:
            others.append(c)
    same = old is not None and old.get("status") == wanted["status"]
    wanted["lastTransitionTime"] = old.get("lastTransitionTime", now) if same else now
    return [*others, wanted]


def check_and_decrement(pdb: dict, pod_name: str, now: str, dry_run: bool) -> dict:
    """The budget's status after one more eviction of `pod_name`, or the refusal."""
    name = pdb["metadata"]["name"]
    status = dict(pdb.get("status") or {})
    if int(status.get("observedGeneration", 0)) < int(pdb["metadata"].get("generation", 0)):
        raise budget_busy(name)
    allowed = int(status.get("disruptionsAllowed", 0))
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise _forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        )
    if allowed == 0:
        raise errors.StatusError(
            429,
            "TooManyRequests",
            VIOLATION,
            {
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {name} needs "
                        f"{status.get('desiredHealthy', 0)} healthy pods and has "
                        f"{status.get('currentHealthy', 0)} currently",
                    }
                ]
            },
        )
    status["disruptionsAllowed"] = allowed - 1
    if allowed == 1:
        status["conditions"] = disruption_allowed_condition(status, now)
    if not dry_run:
        # Tells the disruption controller not to count the pod as healthy any more.
        status["disruptedPods"] = dict(status.get("disruptedPods") or {}, **{pod_name: now})
    return status
