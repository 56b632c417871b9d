"""What blocks a drain, from pod and PDB JSON as the API returns it.

The rules are kubectl drain's (kubernetes/kubectl kubernetes-1.33.0 pkg/drain/filters.go,
pkg/drain/drain.go) and the eviction API's (kubernetes pkg/registry/core/pod/storage/
eviction.go): see k8sboot/nodes/pods.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sboot.errors import UnsafeError
from k8sboot.nodes.drain import DrainOptions
from k8sboot.nodes.pods import (
    OVERRIDE,
    Blocker,
    blockers,
    evictable,
    overridable,
    selector_matches,
    why_left,
)
from k8sboot.workflows import node_drain

from .factsdata import running_context
from .hacluster import ha_cluster
from .podsdata import MIRROR, WEB, pdb, pod, web


def kinds(found: list[Blocker]) -> list[tuple[str, str]]:
    return [(b.pod, b.kind) for b in found]


def test_daemonset_mirror_and_other_nodes_pods_are_not_evicted() -> None:
    pods = [
        pod("ds", owner="DaemonSet"),
        pod("static", owner="Node", annotations={"kubernetes.io/config.mirror": "abc"}),
        pod("elsewhere", node="w2"),
        pod("web"),
    ]
    assert [p["metadata"]["name"] for p in evictable(pods, "w1")] == ["web"]
    assert blockers(pods, [], "w1") == []


def test_a_finished_daemonset_pod_is_deleted_by_the_drain() -> None:
    """kubectl kubernetes-1.33.0 pkg/drain/filters.go daemonSetFilter: a Succeeded or Failed
    DaemonSet pod may be removed; mirror pods are skipped whatever their phase."""
    pods = [
        pod("ds-done", owner="DaemonSet", phase="Failed"),
        pod("static-done", owner="Node", phase="Succeeded", annotations={MIRROR: "x"}),
    ]
    assert [p["metadata"]["name"] for p in evictable(pods, "w1")] == ["ds-done"]
    assert blockers(pods, [], "w1") == []


def test_a_budget_allowing_no_disruption_blocks_its_ready_pods_on_the_node() -> None:
    pods = [web("web-1"), web("web-2", node="w2")]
    budget = pdb("web", WEB, 0, minAvailable=2)
    (found,) = blockers(pods, [budget], "w1")
    assert found.pod == "default/web-1" and found.kind == "pdb"
    assert "PodDisruptionBudget default/web (minAvailable 2) allows 0 disruption(s)" in found.detail
    # With one disruption allowed the drain can go ahead (kubectl retries the rest).
    assert blockers(pods, [pdb("web", WEB, 1)], "w1") == []


def test_bare_pods_and_emptydir_pods_block() -> None:
    pods = [pod("bare", owner=None), pod("scratch", emptydir=True)]
    assert set(kinds(blockers(pods, [], "w1"))) == {
        ("default/bare", "unmanaged"),
        ("default/scratch", "local-storage"),
    }
    assert [b.kind for b in blockers(pods, [], "w1", delete_emptydir_data=True)] == ["unmanaged"]


def test_finished_and_terminating_pods_do_not_block() -> None:
    budget = pdb("web", WEB, 0)
    pods = [
        web("done", owner=None, emptydir=True, phase="Succeeded"),
        web("failed", phase="Failed"),
        web("going", owner=None, deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    assert blockers(pods, [budget], "w1") == []


def test_pending_pods_are_evicted_whatever_their_budget_says() -> None:
    """kubernetes pkg/registry/core/pod/storage/eviction.go canIgnorePDB: a Pending pod is
    deleted without consulting budgets; kubectl's own filters still apply to it."""
    pods = [
        web("starting", phase="Pending"),
        web("bare", owner=None, phase="Pending"),
        web("scratch", emptydir=True, phase="Pending"),
    ]
    budgets = [pdb("web", WEB, 0), pdb("all", {}, 0)]
    assert kinds(blockers(pods, budgets, "w1")) == [
        ("default/bare", "unmanaged"),
        ("default/scratch", "local-storage"),
    ]


def test_an_unready_pod_goes_when_its_budget_always_allows_it() -> None:
    """eviction.go: unhealthyPodEvictionPolicy AlwaysAllow lets a pod that is not Ready go
    without touching the budget, however disrupted the application is."""
    budget = pdb("web", WEB, 0, healthy=0, wanted=2, unhealthyPodEvictionPolicy="AlwaysAllow")
    assert blockers([web("crashing", ready=False)], [budget], "w1") == []
    # A Ready pod is still held by the same budget.
    assert kinds(blockers([web("serving")], [budget], "w1")) == [("default/serving", "pdb")]


@pytest.mark.parametrize("policy", [None, "IfHealthyBudget"])
def test_an_unready_pod_goes_while_its_budget_is_healthy(policy: str | None) -> None:
    """eviction.go: with IfHealthyBudget (or no policy) an unready pod goes when the stored
    status has currentHealthy >= desiredHealthy > 0, even with no disruption allowed."""
    extra = {"unhealthyPodEvictionPolicy": policy} if policy else {}
    healthy = pdb("web", WEB, 0, healthy=2, wanted=2, minAvailable=2, **extra)
    assert blockers([web("unready", ready=False)], [healthy], "w1") == []
    silent = web("no-conditions")
    del silent["status"]["conditions"]
    assert blockers([silent], [healthy], "w1") == []

    disrupted = pdb("web", WEB, 0, healthy=1, wanted=2, minAvailable=2, **extra)
    (found,) = blockers([web("unready", ready=False)], [disrupted], "w1")
    assert found.kind == "pdb"
    assert "allows 0 disruption(s) now (1 healthy, 2 wanted)" in found.detail
    assert "the pod is not Ready" in found.detail and "IfHealthyBudget" in found.detail


def test_an_unready_pod_under_a_budget_that_wants_no_healthy_pod_needs_a_disruption() -> None:
    """eviction.go: desiredHealthy must be > 0 for the IfHealthyBudget shortcut."""
    empty = pdb("web", WEB, 0, healthy=0, wanted=0, maxUnavailable="100%")
    (found,) = blockers([web("unready", ready=False)], [empty], "w1")
    assert found.kind == "pdb" and "the pod is not Ready" in found.detail
    assert blockers([web("unready", ready=False)], [pdb("web", WEB, 1, 0, 0)], "w1") == []


def test_a_budget_whose_status_is_stale_blocks_even_with_disruptions_allowed() -> None:
    """eviction.go checkAndDecrement: observedGeneration < generation answers 429 (the
    budget "is still being processed"), whatever disruptionsAllowed says."""
    stale = pdb("web", WEB, 3, generation=2, observed=1, minAvailable=1)
    (found,) = blockers([web("web-1")], [stale], "w1")
    assert found.kind == "pdb"
    assert "observedGeneration 1, generation 2" in found.detail
    assert "kube-controller-manager" in found.detail
    # A fresh budget without status yet (observedGeneration is omitted while 0) too.
    fresh = pdb("web", WEB, 0, healthy=0, wanted=0, generation=1)
    del fresh["status"]["observedGeneration"]
    assert kinds(blockers([web("web-1")], [fresh], "w1")) == [("default/web-1", "pdb")]
    # Budget waits are overridden by --force (the drain then waits for it).
    assert overridable(blockers([web("web-1")], [stale], "w1"), True, False) == []


def test_a_status_the_eviction_api_refuses_is_not_overridden_by_force() -> None:
    """eviction.go checkAndDecrement: a negative disruptionsAllowed or more than 2000
    disruptedPods answers 403, which kubectl drain does not retry."""
    negative = pdb("web", WEB, -1)
    crowded = pdb("web", WEB, 5)
    crowded["status"]["disruptedPods"] = {f"p{i}": "2026-01-01T00:00:00Z" for i in range(2001)}
    for budget, words in ((negative, "disruptionsAllowed -1"), (crowded, "2001 evicted pods")):
        (found,) = blockers([web("web-1")], [budget], "w1")
        assert found.kind == "pdb-refused" and words in found.detail
        assert overridable([found], force=True, delete_emptydir_data=True) == [found]
    full = pdb("web", WEB, 5)
    full["status"]["disruptedPods"] = {f"p{i}": "2026-01-01T00:00:00Z" for i in range(2000)}
    assert blockers([web("web-1")], [full], "w1") == []


def test_a_pod_under_two_budgets_blocks_and_force_does_not_help() -> None:
    """eviction.go: more than one budget answers 500 ("This pod has more than one
    PodDisruptionBudget, ..."); kubectl kubernetes-1.33.0 pkg/drain/drain.go evictPods
    retries only 429, so the drain stops, --force or not (--force is only about pods
    without a controller: pkg/cmd/drain/drain.go)."""
    pods = [web("web", ready=False)]
    budgets = [
        pdb("a", WEB, 5, unhealthyPodEvictionPolicy="AlwaysAllow"),
        pdb("b", {"matchLabels": {}}, 5),
    ]
    (found,) = blockers(pods, budgets, "w1")
    assert found.kind == "several-pdbs" and "default/a, default/b" in found.detail
    assert overridable([found], force=True, delete_emptydir_data=True) == [found]
    assert "does not help" in OVERRIDE["several-pdbs"]
    assert "--force drains" not in OVERRIDE["several-pdbs"]


def test_the_messages_say_what_force_does() -> None:
    assert "never bypassed" in OVERRIDE["pdb"] and "timeout" in OVERRIDE["pdb"]
    assert "does not help" in OVERRIDE["pdb-refused"]
    assert OVERRIDE["unmanaged"].startswith("--force deletes it")
    assert OVERRIDE["local-storage"].startswith("--delete-emptydir-data")


def test_several_budgets_refuse_a_forced_drain_and_say_why(base: dict, tmp_path: Path) -> None:
    both = [pdb("a", WEB, 5), pdb("b", {}, 5)]
    answers = {"get pods": {"items": [web("web-1")]}, "get poddisruptionbudgets": {"items": both}}
    ctx = running_context(ha_cluster(base), tmp_path, answers)
    with pytest.raises(UnsafeError, match=r"several PodDisruptionBudgets.*does not help"):
        node_drain("w1", DrainOptions(force=True, delete_emptydir_data=True)).steps[0].plan(ctx)


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {"app": "web"}, False),  # no selector: matches nothing
        ({}, {"app": "web"}, True),  # empty selector: everything in the namespace
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            {"app": "web"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
            {"app": "web"},
            False,
        ),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {}, True),
        # Invalid selectors match nothing: the API server skips such a budget.
        ({"matchExpressions": [{"key": "app", "operator": "Is", "values": ["web"]}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": []}]}, {}, False),
        (
            {"matchExpressions": [{"key": "app", "operator": "DoesNotExist", "values": ["x"]}]},
            {},
            False,
        ),
    ],
)
def test_label_selectors(selector, labels, matches) -> None:
    assert selector_matches(selector, labels) is matches


def test_budgets_in_other_namespaces_do_not_apply() -> None:
    budget = pdb("web", {}, 0)
    budget["metadata"]["namespace"] = "other"
    assert blockers([pod("web")], [budget], "w1") == []


def test_force_overrides_budget_waits_and_bare_pods_only() -> None:
    found = [
        Blocker("default/a", "pdb", "budget"),
        Blocker("default/b", "unmanaged", "bare"),
        Blocker("default/c", "local-storage", "emptyDir"),
        Blocker("default/d", "several-pdbs", "two budgets"),
    ]
    assert [b.pod for b in overridable(found, force=True, delete_emptydir_data=False)] == [
        "default/c",
        "default/d",
    ]
    assert [b.pod for b in overridable(found, force=False, delete_emptydir_data=True)] == [
        "default/a",
        "default/b",
        "default/d",
    ]
    assert [b.pod for b in overridable(found, force=True, delete_emptydir_data=True)] == [
        "default/d"
    ]


def test_why_pods_are_left_after_a_timeout() -> None:
    pods = [
        web("web-1"),
        web("web-2"),
        pod("old", deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("slow"),
        pod("ds", owner="DaemonSet"),
    ]
    left = why_left(pods, [pdb("web", WEB, 0, maxUnavailable=0)], "w1")
    assert len(left) == 3
    assert left[0].startswith(
        "default/web-1, default/web-2 (PodDisruptionBudget default/web (maxUnavailable 0)"
    )
    assert (
        left[1]
        == "default/old (terminating since 2026-01-01T00:00:00Z; waiting for the kubelet on w1)"
    )
    assert left[2] == "default/slow (eviction not yet accepted)"
