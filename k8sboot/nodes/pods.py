"""What a drain would do to the pods of a node, read from the API's pod and PDB JSON.

Two sets of rules decide it, and both are followed here pod by pod, so that a drain is
refused only when it would really fail or hang, and never hangs on a budget without
saying which one.

`kubectl drain --ignore-daemonsets` chooses the pods: DaemonSet and mirror (static) pods
stay, finished pods go whatever they are, a pod without a controller needs `--force`
(which deletes it for good) and a pod with emptyDir volumes `--delete-emptydir-data`.
That is all kubectl's `--force` changes: every other pod goes through the eviction API.

The eviction API decides from the budget's stored status, as written by the disruption
controller (or by an earlier eviction):
- Pending, finished and terminating pods are deleted without looking at budgets;
- a pod selected by more than one budget is refused with 500, and kubectl drain gives up
  on it at once (it retries only 429);
- a pod that is not Ready goes without using the budget when its
  unhealthyPodEvictionPolicy is AlwaysAllow, or (IfHealthyBudget, the default) while the
  budget has currentHealthy >= desiredHealthy > 0;
- otherwise: a status older than the spec (observedGeneration < generation) is a 429, a
  negative disruptionsAllowed or more than 2000 disruptedPods a 403 (kubectl gives up),
  no disruption allowed a 429 (kubectl retries every 5 s until its --timeout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
MAX_DISRUPTED_PODS = 2000  # the eviction API refuses a budget listing more

BlockKind = Literal["pdb", "several-pdbs", "pdb-refused", "unmanaged", "local-storage"]

# What each kind of blocker means for the options, for the messages.
OVERRIDE: dict[BlockKind, str] = {
    "pdb": (
        "--force only starts the drain anyway: budgets are never bypassed, kubectl retries "
        "the refused evictions every 5 s and the drain fails at its timeout unless the "
        "budget allows them by then"
    ),
    "several-pdbs": (
        "--force does not help: the eviction API refuses such a pod outright (500) and "
        "kubectl drain stops trying; change the budgets so that at most one selects it"
    ),
    "pdb-refused": (
        "--force does not help: the eviction API refuses (403) while the budget's status "
        "says that, and kubectl drain stops trying; it clears when kube-controller-manager "
        "rewrites the status"
    ),
    "unmanaged": "--force deletes it for good: nothing recreates it",
    "local-storage": "--delete-emptydir-data deletes that data",
}

# Refused by the eviction API itself: kubectl drain stops at the answer whatever its flags
# say, and k8sboot never deletes a pod around the eviction API.
UNFORCEABLE: frozenset[BlockKind] = frozenset({"several-pdbs", "pdb-refused"})


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


def is_terminating(pod: dict[str, Any]) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def is_ready(pod: dict[str, Any]) -> bool:
    """Healthy as budgets count it: the Ready condition is True."""
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ignores_budgets(pod: dict[str, Any]) -> bool:
    """The eviction API deletes such a pod without consulting any budget."""
    phase = pod.get("status", {}).get("phase")
    return phase in ("Pending", "Succeeded", "Failed") or is_terminating(pod)


def has_local_storage(pod: dict[str, Any]) -> bool:
    return any("emptyDir" in v for v in pod.get("spec", {}).get("volumes") or [])


def evictable(pods: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    """The pods on `node` that a drain evicts (kubectl's filters, in its order): a
    finished DaemonSet pod goes too, a mirror pod never does."""
    return [
        p
        for p in pods
        if p.get("spec", {}).get("nodeName") == node
        and (not is_daemonset_pod(p) or is_finished(p))
        and not is_mirror_pod(p)
    ]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions). policy/v1: an empty selector
    matches every pod of the namespace; a missing or invalid one matches none."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        if (operator in ("In", "NotIn")) != bool(values):
            return False  # invalid: the API server skips such a budget
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
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


def _budget_name(budget: dict[str, Any]) -> str:
    meta, spec = budget.get("metadata", {}), budget.get("spec", {})
    if "minAvailable" in spec:
        rule = f"minAvailable {spec['minAvailable']}"
    elif "maxUnavailable" in spec:
        rule = f"maxUnavailable {spec['maxUnavailable']}"
    else:
        rule = "no minAvailable or maxUnavailable"
    return f"PodDisruptionBudget {meta.get('namespace')}/{meta.get('name')} ({rule})"


def _budget_detail(budget: dict[str, Any]) -> str:
    status = budget.get("status", {})
    return (
        f"{_budget_name(budget)} allows {status.get('disruptionsAllowed', 0)} disruption(s) "
        f"now ({status.get('currentHealthy', '?')} healthy, "
        f"{status.get('desiredHealthy', '?')} wanted)"
    )


def _budget_blocker(pod: dict[str, Any], budget: dict[str, Any]) -> Blocker | None:
    """What the eviction API answers for a pod under exactly this one budget."""
    key = pod_key(pod)
    spec, status = budget.get("spec") or {}, budget.get("status") or {}
    policy = spec.get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
    if not is_ready(pod):
        # An unready pod does not count as healthy: evicting it costs the budget nothing
        # when the policy says so, or while the application is not disrupted.
        if policy == "AlwaysAllow":
            return None
        current, desired = status.get("currentHealthy", 0), status.get("desiredHealthy", 0)
        if current >= desired > 0:
            return None
    observed = status.get("observedGeneration", 0)
    generation = budget.get("metadata", {}).get("generation", 0)
    if observed < generation:
        return Blocker(
            key,
            "pdb",
            f"{_budget_name(budget)} has a status older than its spec (observedGeneration "
            f"{observed}, generation {generation}): evictions wait until "
            "kube-controller-manager updates it",
        )
    allowed = status.get("disruptionsAllowed", 0)
    if allowed < 0:
        return Blocker(
            key, "pdb-refused", f"{_budget_name(budget)} has disruptionsAllowed {allowed}"
        )
    pending = len(status.get("disruptedPods") or {})
    if pending > MAX_DISRUPTED_PODS:
        return Blocker(
            key,
            "pdb-refused",
            f"{_budget_name(budget)} lists {pending} evicted pods not yet seen deleted "
            f"(the eviction API accepts {MAX_DISRUPTED_PODS})",
        )
    if allowed == 0:
        detail = _budget_detail(budget)
        if not is_ready(pod):
            detail += (
                f"; the pod is not Ready, which unhealthyPodEvictionPolicy {policy} lets go "
                "only while the budget has the healthy pods it wants"
            )
        return Blocker(key, "pdb", detail)
    return None


def blockers(
    pods: list[dict[str, Any]],
    pdbs: list[dict[str, Any]],
    node: str,
    delete_emptydir_data: bool = False,
) -> list[Blocker]:
    """What would stop `kubectl drain --ignore-daemonsets` on `node` or keep it waiting."""
    found: list[Blocker] = []
    for pod in evictable(pods, node):
        if is_finished(pod):
            continue  # kubectl's filters pass them and the API deletes them
        if is_terminating(pod):
            # Going already, and exempt from budgets. kubectl still applies its filters
            # to them, but on a live node they are gone within their grace period, and
            # where the kubelet is gone k8sboot's drain skips them
            # (--skip-wait-for-delete-timeout).
            continue
        key = pod_key(pod)
        if controller_of(pod) is None:
            found.append(Blocker(key, "unmanaged", "no controller (a bare Pod)"))
        if has_local_storage(pod) and not delete_emptydir_data:
            found.append(Blocker(key, "local-storage", "emptyDir data would be lost"))
        if ignores_budgets(pod):
            continue
        budgets = budgets_of(pod, pdbs)
        if len(budgets) > 1:
            names = ", ".join(pod_key(b) for b in budgets)
            found.append(
                Blocker(
                    key,
                    "several-pdbs",
                    f"matched by several PodDisruptionBudgets ({names}), which the eviction "
                    "API refuses for any pod",
                )
            )
        elif budgets:
            blocker = _budget_blocker(pod, budgets[0])
            if blocker is not None:
                found.append(blocker)
    return found


def overridable(
    found: list[Blocker], force: bool, delete_emptydir_data: bool, removal: bool = False
) -> list[Blocker]:
    """The blockers that the given options do not override. Lost emptyDir data takes its
    own flag, and what the eviction API refuses outright no flag overrides, except for a
    forced removal: the node goes whatever its drain does, and the pod GC removes the
    pods the eviction API refused once the Node is deleted."""

    def overridden(blocker: Blocker) -> bool:
        if blocker.kind == "local-storage":
            return delete_emptydir_data
        return force and (removal or blocker.kind not in UNFORCEABLE)

    return [b for b in found if not overridden(b)]


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
