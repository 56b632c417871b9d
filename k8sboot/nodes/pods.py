"""What a drain would do to the pods of a node, read from the API's pod and PDB JSON.

The rules follow `kubectl drain`: DaemonSet pods and mirror (static) pods stay, finished
pods are deleted freely; a pod without a controller needs `--force`, a pod with emptyDir
volumes needs `--delete-emptydir-data`, and evictions wait while a PodDisruptionBudget
allows no disruption. Knowing this before draining means a drain never hangs on a PDB
without saying which one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

BlockKind = Literal["pdb", "unmanaged", "local-storage", "several-pdbs"]

# How each kind of blocker can be overridden, for the messages.
OVERRIDE: dict[BlockKind, str] = {
    "pdb": "--force drains anyway and waits for the budget until the timeout",
    "unmanaged": "--force deletes it for good: nothing recreates it",
    "local-storage": "--delete-emptydir-data deletes that data",
    "several-pdbs": "--force drains anyway; the eviction API refuses such a pod until fixed",
}


@dataclass(frozen=True)
class Blocker:
    pod: str  # namespace/name
    kind: BlockKind
    detail: str

    def __str__(self) -> str:
        return f"{self.pod}: {self.detail}"


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata", {})
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"


def controller_of(pod: dict[str, Any]) -> dict[str, Any] | None:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def is_daemonset_pod(pod: dict[str, Any]) -> bool:
    owner = controller_of(pod)
    return owner is not None and owner.get("kind") == "DaemonSet"


def is_mirror_pod(pod: dict[str, Any]) -> bool:
    return MIRROR_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {})


def is_finished(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def has_local_storage(pod: dict[str, Any]) -> bool:
    return any("emptyDir" in v for v in pod.get("spec", {}).get("volumes") or [])


def evictable(pods: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    """The pods on `node` that a drain evicts (kubectl's filters, in its order)."""
    return [
        p
        for p in pods
        if p.get("spec", {}).get("nodeName") == node
        and not is_daemonset_pod(p)
        and not is_mirror_pod(p)
    ]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions). policy/v1: an empty selector
    matches every pod of the namespace; a missing one matches none."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def budgets_of(pod: dict[str, Any], pdbs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    meta = pod.get("metadata", {})
    namespace = meta.get("namespace", "default")
    labels = meta.get("labels") or {}
    return [
        b
        for b in pdbs
        if b.get("metadata", {}).get("namespace", "default") == namespace
        and selector_matches(b.get("spec", {}).get("selector"), labels)
    ]


def _budget_detail(budget: dict[str, Any]) -> str:
    meta, status = budget.get("metadata", {}), budget.get("status", {})
    spec = budget.get("spec", {})
    rule = (
        f"minAvailable {spec['minAvailable']}"
        if "minAvailable" in spec
        else f"maxUnavailable {spec.get('maxUnavailable')}"
    )
    return (
        f"PodDisruptionBudget {meta.get('namespace')}/{meta.get('name')} ({rule}) allows "
        f"{status.get('disruptionsAllowed', 0)} disruption(s) now "
        f"({status.get('currentHealthy', '?')} healthy, {status.get('desiredHealthy', '?')} "
        "wanted)"
    )


def blockers(
    pods: list[dict[str, Any]],
    pdbs: list[dict[str, Any]],
    node: str,
    delete_emptydir_data: bool = False,
) -> list[Blocker]:
    """What would stop `kubectl drain --ignore-daemonsets` on `node` or keep it waiting."""
    found: list[Blocker] = []
    for pod in evictable(pods, node):
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue  # already going
        key = pod_key(pod)
        if is_finished(pod):
            continue  # kubectl deletes finished pods whatever they are
        if controller_of(pod) is None:
            found.append(Blocker(key, "unmanaged", "no controller (a bare Pod)"))
        if has_local_storage(pod) and not delete_emptydir_data:
            found.append(Blocker(key, "local-storage", "emptyDir data would be lost"))
        budgets = budgets_of(pod, pdbs)
        if len(budgets) > 1:
            names = ", ".join(pod_key(b) for b in budgets)
            found.append(
                Blocker(key, "several-pdbs", f"matched by several PodDisruptionBudgets ({names})")
            )
        elif budgets and int(budgets[0].get("status", {}).get("disruptionsAllowed", 0)) <= 0:
            found.append(Blocker(key, "pdb", _budget_detail(budgets[0])))
    return found


def overridable(found: list[Blocker], force: bool, delete_emptydir_data: bool) -> list[Blocker]:
    """The blockers that the given options do not override. Lost emptyDir data is never
    implied by --force: it takes its own flag."""
    return [
        b
        for b in found
        if (b.kind == "local-storage" and not delete_emptydir_data)
        or (b.kind != "local-storage" and not force)
    ]


def why_left(pods: list[dict[str, Any]], pdbs: list[dict[str, Any]], node: str) -> list[str]:
    """For a drain that ran out of time: the pods still on the node, grouped by why."""
    reasons: dict[str, list[str]] = {}
    by_pod: dict[str, list[str]] = {}
    for blocker in blockers(pods, pdbs, node):
        by_pod.setdefault(blocker.pod, []).append(blocker.detail)
    for pod in evictable(pods, node):
        key = pod_key(pod)
        deleting = pod.get("metadata", {}).get("deletionTimestamp")
        if deleting:
            why = f"terminating since {deleting}; waiting for the kubelet on {node}"
        elif key in by_pod:
            why = "; ".join(by_pod[key])
        else:
            why = "eviction not yet accepted"
        reasons.setdefault(why, []).append(key)
    return [f"{', '.join(keys)} ({why})" for why, keys in reasons.items()]
