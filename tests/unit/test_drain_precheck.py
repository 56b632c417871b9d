"""What blocks a drain, from pod and PDB JSON as the API returns it."""

from __future__ import annotations

from typing import Any

import pytest

from k8sboot.nodes.pods import (
    Blocker,
    blockers,
    evictable,
    overridable,
    selector_matches,
    why_left,
)


def pod(
    name: str,
    node: str = "w1",
    owner: str | None = "ReplicaSet",
    labels: dict[str, str] | None = None,
    emptydir: bool = False,
    phase: str = "Running",
    **meta: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels or {}}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner, "name": "x", "controller": True}]
    metadata.update(meta)
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c"}]}
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return {"metadata": metadata, "spec": spec, "status": {"phase": phase}}


def pdb(name: str, selector: dict | None, allowed: int, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, **spec},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2},
    }


def test_daemonset_mirror_and_other_nodes_pods_are_not_evicted() -> None:
    pods = [
        pod("ds", owner="DaemonSet"),
        pod("static", owner="Node", annotations={"kubernetes.io/config.mirror": "abc"}),
        pod("elsewhere", node="w2"),
        pod("web"),
    ]
    assert [p["metadata"]["name"] for p in evictable(pods, "w1")] == ["web"]
    assert blockers(pods, [], "w1") == []


def test_a_budget_allowing_no_disruption_blocks_its_pods_on_the_node() -> None:
    pods = [pod("web-1", labels={"app": "web"}), pod("web-2", node="w2", labels={"app": "web"})]
    budget = pdb("web", {"matchLabels": {"app": "web"}}, 0, minAvailable=2)
    (found,) = blockers(pods, [budget], "w1")
    assert found.pod == "default/web-1" and found.kind == "pdb"
    assert "PodDisruptionBudget default/web (minAvailable 2) allows 0 disruption(s)" in found.detail
    # With one disruption allowed the drain can go ahead (kubectl retries the rest).
    assert blockers(pods, [pdb("web", {"matchLabels": {"app": "web"}}, 1)], "w1") == []


def test_bare_pods_and_emptydir_pods_block() -> None:
    pods = [pod("bare", owner=None), pod("scratch", emptydir=True)]
    kinds = {(b.pod, b.kind) for b in blockers(pods, [], "w1")}
    assert kinds == {("default/bare", "unmanaged"), ("default/scratch", "local-storage")}
    assert [b.kind for b in blockers(pods, [], "w1", delete_emptydir_data=True)] == ["unmanaged"]


def test_finished_and_terminating_pods_do_not_block() -> None:
    pods = [
        pod("done", owner=None, emptydir=True, phase="Succeeded"),
        pod("going", owner=None, deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    assert blockers(pods, [], "w1") == []


def test_a_pod_under_two_budgets_blocks() -> None:
    pods = [pod("web", labels={"app": "web", "tier": "front"})]
    budgets = [pdb("a", {"matchLabels": {"app": "web"}}, 5), pdb("b", {"matchLabels": {}}, 5)]
    (found,) = blockers(pods, budgets, "w1")
    assert found.kind == "several-pdbs" and "default/a, default/b" in found.detail


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
    ],
)
def test_label_selectors(selector, labels, matches) -> None:
    assert selector_matches(selector, labels) is matches


def test_budgets_in_other_namespaces_do_not_apply() -> None:
    budget = pdb("web", {}, 0)
    budget["metadata"]["namespace"] = "other"
    assert blockers([pod("web")], [budget], "w1") == []


def test_force_overrides_all_but_lost_emptydir_data() -> None:
    found = [
        Blocker("default/a", "pdb", "budget"),
        Blocker("default/b", "unmanaged", "bare"),
        Blocker("default/c", "local-storage", "emptyDir"),
    ]
    assert [b.pod for b in overridable(found, force=True, delete_emptydir_data=False)] == [
        "default/c"
    ]
    assert [b.pod for b in overridable(found, force=False, delete_emptydir_data=True)] == [
        "default/a",
        "default/b",
    ]
    assert overridable(found, force=True, delete_emptydir_data=True) == []


def test_why_pods_are_left_after_a_timeout() -> None:
    pods = [
        pod("web-1", labels={"app": "web"}),
        pod("web-2", labels={"app": "web"}),
        pod("old", deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("slow"),
        pod("ds", owner="DaemonSet"),
    ]
    left = why_left(pods, [pdb("web", {"matchLabels": {"app": "web"}}, 0, maxUnavailable=0)], "w1")
    assert len(left) == 3
    assert left[0].startswith(
        "default/web-1, default/web-2 (PodDisruptionBudget default/web (maxUnavailable 0)"
    )
    assert (
        left[1]
        == "default/old (terminating since 2026-01-01T00:00:00Z; waiting for the kubelet on w1)"
    )
    assert left[2] == "default/slow (eviction not yet accepted)"
