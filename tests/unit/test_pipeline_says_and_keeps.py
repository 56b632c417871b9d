"""What a run tells and keeps: a dry run tells its notes as what a run would do, and a
run refused by the lock changes nothing in the state directory."""

from __future__ import annotations

import io
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from k8sboot import pipeline
from k8sboot.actions import Action, OnHost
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import Facts, NodeStatus
from k8sboot.lock import ClusterLock, Locked
from k8sboot.nodes import removed
from k8sboot.pipeline import Workflow
from k8sboot.report import TextReporter
from k8sboot.state import StateDir
from k8sboot.step import Context, Step
from k8sboot.workflows import up

from .conftest import load_data
from .factsdata import fresh


class Noting(Step):
    title = "noting"

    def plan(self, ctx: Context) -> list[Action]:
        ctx.notes.append("w1 drained despite its budget (--force)")
        return []


@pytest.fixture
def cluster(base: dict, tmp_path: Path, monkeypatch):
    cluster = load_data(base).cluster
    cluster.state_dir = tmp_path / "state"
    monkeypatch.setattr(pipeline, "require_ssh_client", lambda: None)
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext({}))
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: Facts(hosts={}))
    return cluster


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_dry_run_tells_its_notes_as_not_done(cluster, dry_run: bool) -> None:
    told = io.StringIO()
    workflow = Workflow("noting", [Noting()], preflight=False, needs_all_hosts=False)
    pipeline.run(workflow, cluster, TextReporter(stream=told), dry_run=dry_run)
    said = "note (if applied)" if dry_run else "note"
    assert f"  {said}: w1 drained despite its budget (--force)" in told.getvalue().splitlines()


@dataclass(frozen=True)
class Tell(OnHost):
    def describe(self) -> str:
        return f"tell on {self.host}"


@handles(Tell)
def _tell(executor: Executor, action: Tell) -> Outcome:
    nodes = {"w1": NodeStatus("w1", True, "KubeletReady", "v1.33.1", None, False)}
    return Outcome((action.host,), notes=(f"told by {action.host}",), nodes=nodes)


class Telling(Step):
    title = "telling"

    def plan(self, ctx: Context) -> list[Action]:
        return [Tell("cp1")]


class AfterTelling(Step):
    title = "after telling"

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def plan(self, ctx: Context) -> list[Action]:
        self.seen.append(set(ctx.nodes))
        return []


@pytest.mark.parametrize("dry_run", [True, False])
def test_what_an_action_did_is_merged_by_the_pipeline_and_never_told_on_a_dry_run(
    cluster, dry_run: bool
) -> None:
    told = io.StringIO()
    after = AfterTelling()
    workflow = Workflow("telling", [Telling(), after], preflight=False, needs_all_hosts=False)
    pipeline.run(workflow, cluster, TextReporter(stream=told), dry_run=dry_run)
    lines = told.getvalue().splitlines()
    if dry_run:  # nothing was carried out: nothing it would have said is told
        assert not any("told by cp1" in line for line in lines)
        assert after.seen == [set()]
    else:
        assert "  note: told by cp1" in lines
        assert after.seen == [{"w1"}]  # the Nodes the action saw, for the steps after it


@dataclass(frozen=True)
class Change(OnHost):
    def describe(self) -> str:
        return f"change {self.host}"


@handles(Change)
def _change(executor: Executor, action: Change) -> Outcome:
    return Outcome((action.host,), reprobe=(action.host,))


class Changing(Step):
    title = "changing"

    def plan(self, ctx: Context) -> list[Action]:
        return [Change("cp1")]


class Looking(Step):
    title = "looking"

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def plan(self, ctx: Context) -> list[Action]:
        self.seen.append(
            ctx.facts.hosts["cp1"].data["hostname"] if "cp1" in ctx.facts.hosts else None
        )
        return []


def test_a_step_after_a_change_plans_from_the_host_looked_at_again(cluster, monkeypatch) -> None:
    probed: list[list[str]] = []

    def probe(transport, names, request):
        probed.append(list(names))
        return Facts(hosts={"cp1": fresh("cp1", "10.0.0.11", hostname="after the change")})

    monkeypatch.setattr(pipeline, "probe", probe)
    looking = Looking()
    workflow = Workflow("changing", [Changing(), looking], preflight=False, needs_all_hosts=False)
    pipeline.run(workflow, cluster, TextReporter(stream=io.StringIO()))
    assert probed == [["cp1"]] and looking.seen == ["after the change"]
    pipeline.run(workflow, cluster, TextReporter(stream=io.StringIO()), dry_run=True)
    assert probed == [["cp1"]]  # a dry run changed nothing, so it looks at nothing again


def test_a_run_refused_by_the_lock_forgets_no_removed_host(cluster) -> None:
    state = StateDir(cluster.state_dir).ensure()
    removed.record(state, "w9", None)  # gone from the cluster file: a run forgets it
    holder = ClusterLock(state.lock, "node-remove")
    holder.acquire()
    try:
        with pytest.raises(Locked):
            pipeline.run(up(), cluster, TextReporter(stream=io.StringIO()))
    finally:
        holder.release()
    assert "w9" in removed.load(state)


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_removed_hosts_record_changes_only_under_the_lock(
    cluster, monkeypatch, dry_run: bool
) -> None:
    calls: list[str] = []

    class RecordingLock:
        def __init__(self, path: Path, holder: str) -> None:
            pass

        def acquire(self) -> None:
            calls.append("lock")

        def release(self) -> None:
            calls.append("unlock")

    def leaves_out(cluster, state, may_forget: bool):
        calls.append(f"leaves_out(may_forget={may_forget})")
        return cluster, []

    monkeypatch.setattr(pipeline, "ClusterLock", RecordingLock)
    workflow = Workflow("up", [], preflight=False, needs_all_hosts=False, leaves_out=leaves_out)
    pipeline.run(workflow, cluster, TextReporter(stream=io.StringIO()), dry_run=dry_run)
    if dry_run:  # no lock, and nothing forgotten
        assert calls == ["leaves_out(may_forget=False)"]
    else:
        assert calls == ["lock", "leaves_out(may_forget=True)", "unlock"]


@dataclass(frozen=True)
class Work(OnHost):
    """Work on a host that tells how it goes, and keeps what the operator had read of
    the run by then."""

    told: io.StringIO
    read_meanwhile: list[str]

    def describe(self) -> str:
        return f"work on {self.host}"


@handles(Work)
def _work(executor: Executor, action: Work) -> Outcome:
    executor.progress(action.host, "copying the snapshot")
    action.read_meanwhile.append(action.told.getvalue())
    return Outcome((action.host,))


def test_on_a_pipe_each_hosts_progress_is_a_line_while_the_step_runs(cluster) -> None:
    told, read_meanwhile = io.StringIO(), []  # a StringIO is no terminal, as a CI log

    class Working(Step):
        title = "working"

        def plan(self, ctx: Context) -> list[Action]:
            return [Work("cp1", told, read_meanwhile), Work("w1", told, read_meanwhile)]

    workflow = Workflow("working", [Working()], preflight=False, needs_all_hosts=False)
    pipeline.run(workflow, cluster, TextReporter(stream=told))
    assert read_meanwhile[0].splitlines()[-2:] == ["→ working", "  cp1: copying the snapshot"]
    assert read_meanwhile[1].endswith("  w1: copying the snapshot\n")
    lines = told.getvalue().splitlines()
    assert lines.index("  w1: copying the snapshot") < len(lines) - 1
    assert lines[-1].startswith("✓ working (cp1, w1) ")
