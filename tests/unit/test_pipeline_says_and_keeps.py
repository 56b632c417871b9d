"""What a run keeps: a run refused by the lock changes nothing in the state directory."""

from __future__ import annotations

import io
from contextlib import nullcontext
from pathlib import Path

import pytest

from k8sboot import pipeline
from k8sboot.facts import Facts
from k8sboot.lock import ClusterLock, Locked
from k8sboot.nodes import removed
from k8sboot.report import TextReporter
from k8sboot.state import StateDir
from k8sboot.workflows import up

from .conftest import load_data


@pytest.fixture
def cluster(base: dict, tmp_path: Path, monkeypatch):
    cluster = load_data(base).cluster
    cluster.state_dir = tmp_path / "state"
    monkeypatch.setattr(pipeline, "require_ssh_client", lambda: None)
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext({}))
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: Facts(hosts={}))
    return cluster


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
