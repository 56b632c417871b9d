"""Node maintenance planning: facts and API answers in, actions (or refusals) out."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sboot.actions import RunCommands
from k8sboot.errors import MachineError, UnsafeError, UserError
from k8sboot.executor import Executor
from k8sboot.facts import NodeStatus
from k8sboot.nodes import removed
from k8sboot.nodes.drain import Cordon, Drain, DrainOptions
from k8sboot.nodes.remove import DeleteNode, DeleteNodeObject, RecordRemoval, RemoveEtcdMember
from k8sboot.workflows import node_cordon, node_drain, node_remove

from .conftest import load_data
from .factsdata import running_context
from .hacluster import CONTROL_PLANES as CPS
from .hacluster import ha_cluster


def _members(healthy: set[str]) -> dict[str, object]:
    members = [
        {
            "ID": i,
            "name": n,
            "peerURLs": [f"https://{ip}:2380"],
            "clientURLs": [f"https://{ip}:2379"],
        }
        for i, (n, ip) in enumerate(CPS.items(), 1)
    ]
    health = [{"endpoint": f"https://{ip}:2379", "health": n in healthy} for n, ip in CPS.items()]
    return {"member list": {"members": members}, "endpoint health": health}


@pytest.fixture
def cluster(base: dict):
    return ha_cluster(base)


def _plans(workflow, ctx) -> dict[str, list]:
    return {step.title: step.plan(ctx) for step in workflow.steps}


POD = {
    "metadata": {
        "name": "web-1",
        "namespace": "default",
        "labels": {"app": "web"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web", "controller": True}],
    },
    "spec": {"nodeName": "w1"},
    "status": {"phase": "Running"},
}
BUDGET = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1},
    "status": {"disruptionsAllowed": 0},
}


def test_unknown_node_names_the_known_ones(cluster, tmp_path: Path) -> None:
    ctx = running_context(cluster, tmp_path, {})
    with pytest.raises(UserError, match=r"no node named 'w9'.*known nodes: cp1, cp2, cp3, w1"):
        node_cordon("w9", True).steps[0].plan(ctx)


def test_cordon_is_converged_when_already_cordoned(cluster, tmp_path: Path) -> None:
    ctx = running_context(cluster, tmp_path, {})
    assert node_cordon("w1", True).steps[0].plan(ctx) == [
        Cordon("cp1", "w1", True, "https://10.0.0.11:6443")
    ]
    assert node_cordon("w1", False).steps[0].plan(ctx) == []


def test_drain_refused_by_a_budget_unless_forced(cluster, tmp_path: Path) -> None:
    answers = {"get pods": {"items": [POD]}, "get poddisruptionbudgets": {"items": [BUDGET]}}
    ctx = running_context(cluster, tmp_path, answers)
    with pytest.raises(UnsafeError, match=r"drain of w1 refused.*PodDisruptionBudget default/web"):
        node_drain("w1", DrainOptions()).steps[0].plan(ctx)
    (drain,) = node_drain("w1", DrainOptions(timeout=60, force=True)).steps[0].plan(ctx)
    assert drain == Drain("cp1", "w1", 60, force=True, server="https://10.0.0.11:6443")
    assert any("despite PodDisruptionBudget default/web" in n for n in ctx.notes)


def test_a_drained_node_plans_nothing(cluster, tmp_path: Path) -> None:
    ctx = running_context(
        cluster, tmp_path, {"get pods": {"items": []}, "get poddisruptionbudgets": {"items": []}}
    )
    ctx.nodes["w1"] = NodeStatus("w1", True, "", "v1.33.1", None, True)
    assert node_drain("w1", DrainOptions()).steps[0].plan(ctx) == []


def test_removing_a_control_plane_of_three(cluster, tmp_path: Path) -> None:
    answers = {
        **_members({"cp1", "cp2", "cp3"}),
        "get pods": {"items": []},
        "get poddisruptionbudgets": {"items": []},
    }
    ctx = running_context(cluster, tmp_path, answers)
    plans = _plans(node_remove("cp3", DrainOptions()), ctx)
    assert plans["check that cp3 can go"] == []
    (drain,) = plans["drain cp3"]
    assert drain.server == "https://10.0.0.11:6443" and not drain.skip_wait_for_delete
    assert plans["remove cp3's etcd member"] == [
        RemoveEtcdMember("cp1", "cp3", 3, ("https://10.0.0.13:2380",))
    ]
    (reset,) = plans["kubeadm reset on cp3"]
    assert isinstance(reset, RunCommands) and reset.hosts == ("cp3",)
    assert plans["delete Node cp3"] == [
        DeleteNode("cp1", "cp3", "https://10.0.0.11:6443"),
        RecordRemoval("cp3", "10.0.0.13"),
    ]


def test_the_removal_is_told_only_once_recorded(cluster, tmp_path: Path, monkeypatch) -> None:
    """ "w1 is out of the cluster" comes from the action that records it: planning tells
    nothing (a dry run would say it as done), and a failed record tells nothing either."""
    ctx = running_context(cluster, tmp_path, {})
    (_delete, record) = DeleteNodeObject("w1").plan(ctx)
    assert isinstance(record, RecordRemoval) and ctx.notes == []
    executor = Executor(ctx, ctx.connections)  # type: ignore[attr-defined]

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(removed, "record", full_disk)
    with pytest.raises(OSError):
        executor.execute(record)
    assert ctx.notes == []
    monkeypatch.undo()
    (note,) = executor.execute(record).notes
    assert note.startswith("w1 is out of the cluster: drop it from the cluster file's hosts")
    assert "w1" in removed.load(ctx.state)


def test_removal_without_an_api_fails_and_records_nothing(cluster, tmp_path: Path) -> None:
    """Whether w1 is registered is unknown when no control plane answers: the removal
    must fail (exit 1) instead of recording w1 as removed."""
    ctx = running_context(cluster, tmp_path, {}, dead=tuple(CPS))
    ctx.nodes = {}
    for step in node_remove("w1", DrainOptions()).steps:
        with pytest.raises(MachineError, match=r"cannot remove w1: no control plane answered"):
            step.plan(ctx)
    assert removed.load(ctx.state) == {}


def test_two_to_one_is_refused_with_exit_3(base: dict, tmp_path: Path) -> None:
    cluster = ha_cluster(base, control_planes=2)
    answers = _members({"cp1", "cp2"})
    answers["member list"]["members"] = answers["member list"]["members"][:2]  # type: ignore[index]
    ctx = running_context(cluster, tmp_path, answers)
    with pytest.raises(UnsafeError, match="without quorum") as refused:
        node_remove("cp2", DrainOptions()).steps[0].plan(ctx)
    assert refused.value.exit_code == 3


def test_the_last_control_plane_is_refused(base: dict, tmp_path: Path) -> None:
    ctx = running_context(load_data(base).cluster, tmp_path, {})
    with pytest.raises(UnsafeError, match="cp1 is the last control plane"):
        node_remove("cp1", DrainOptions()).steps[0].plan(ctx)


def test_a_dead_control_plane_is_removed_without_ssh_to_it(cluster, tmp_path: Path) -> None:
    answers = {
        **_members({"cp1", "cp2"}),
        "get pods": {"items": []},
        "get poddisruptionbudgets": {"items": []},
    }
    ctx = running_context(cluster, tmp_path, answers, dead=("cp3",))
    plans = _plans(node_remove("cp3", DrainOptions()), ctx)
    assert plans["drain cp3"][0].skip_wait_for_delete  # its kubelet will never confirm
    assert plans["remove cp3's etcd member"][0].member_id == 3
    assert plans["kubeadm reset on cp3"] == []
    assert any("kubeadm reset did not run there" in n for n in ctx.notes)
    assert ctx.connections["cp3"].ran == []


def test_a_removed_worker_is_converged_on_a_second_run(cluster, tmp_path: Path) -> None:
    ctx = running_context(cluster, tmp_path, {})
    del ctx.nodes["w1"]
    found = ctx.facts.hosts["w1"].data
    found["exists"], found["manifests"], found["stamps"] = {}, [], {}
    found["services"]["kubelet"]["active"] = "inactive"
    removed.record(ctx.state, "w1", "10.0.0.21")
    plans = _plans(node_remove("w1", DrainOptions()), ctx)
    assert {title: actions for title, actions in plans.items() if actions} == {}


def test_a_pod_under_two_budgets_blocks_a_forced_drain_but_not_a_forced_removal(
    cluster, tmp_path: Path
) -> None:
    """The eviction API answers 500 for a pod under several budgets and kubectl drain
    stops, --force or not; `node remove --force` goes on past a failed drain."""
    other = {**BUDGET, "metadata": {"name": "all", "namespace": "default"}}
    answers = {
        "get pods": {"items": [POD]},
        "get poddisruptionbudgets": {"items": [BUDGET, other]},
    }
    ctx = running_context(cluster, tmp_path, answers)
    with pytest.raises(UnsafeError, match="--force does not help"):
        node_drain("w1", DrainOptions(force=True)).steps[0].plan(ctx)
    drain = _plans(node_remove("w1", DrainOptions(force=True)), ctx)["drain w1"]
    assert [d.keep_going for d in drain] == [True]
