"""What a run tells and keeps: a dry run tells its notes as what a run would do, and a
run refused by the lock changes nothing in the state directory."""

from __future__ import annotations

import io
from contextlib import nullcontext
from pathlib import Path

import pytest

from k8sboot import pipeline
from k8sboot.actions import Action
from k8sboot.facts import Facts
from k8sboot.lock import ClusterLock, Locked
from k8sboot.nodes import removed
from k8sboot.pipeline import Workflow
from k8sboot.report import TextReporter
from k8sboot.state import StateDir
from k8sboot.step import Context, Step
from k8sboot.workflows import up

from .conftest import load_data


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
