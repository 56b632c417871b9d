"""Hosts taken out with `node remove` stay out of `up` until the user decides."""

from __future__ import annotations

from pathlib import Path

from k8sboot.nodes import removed
from k8sboot.state import StateDir

from .conftest import load_data


def test_up_leaves_a_removed_host_out_until_it_leaves_the_spec(base: dict, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state").ensure()
    cluster = load_data(base).cluster
    removed.record(state, "w1", "10.0.0.21")

    kept, notes = removed.exclude(cluster, state)
    assert [h.name for h in kept.hosts] == ["cp1"]
    assert "w1 was removed" in notes[0] and "k8sboot node add w1" in notes[0]

    base["hosts"] = base["hosts"][:1]  # the user dropped it from the file
    kept, notes = removed.exclude(load_data(base).cluster, state)
    assert notes == [] and removed.load(state) == {}


def test_another_machine_of_the_same_name_is_not_left_out(base: dict, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state").ensure()
    removed.record(state, "w1", "10.0.0.99")
    kept, notes = removed.exclude(load_data(base).cluster, state)
    assert [h.name for h in kept.hosts] == ["cp1", "w1"] and notes == []
    assert removed.load(state) == {}


def test_a_dry_run_forgets_nothing_and_node_add_forgets(base: dict, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state").ensure()
    removed.record(state, "w9", None)
    removed.exclude(load_data(base).cluster, state, forget=False)
    assert "w9" in removed.load(state)
    assert removed.forget(state, "w9") and not removed.forget(state, "w9")
