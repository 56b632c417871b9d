"""The data directory moves of a restore, run for real by a shell on this machine: the
swap and its rollback are safe to run again after an interruption at any point, and never
delete the data from before (issue 16)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from k8sboot.errors import MachineError
from k8sboot.etcd import restore as etcd_restore
from k8sboot.etcd import restore_record
from k8sboot.etcd.restore import RollBackData, SwapDataDirs
from k8sboot.etcd.restore_record import RestoreRecord
from k8sboot.state import StateDir

from .fakes import FakeTransport, LocalShell

TAG = "0badcafe"


@pytest.fixture
def host(tmp_path: Path, monkeypatch):
    data, kept = tmp_path / "var-lib-etcd", tmp_path / "var-lib-k8sboot-before"
    monkeypatch.setattr(etcd_restore, "ETCD_DATA_DIR", str(data))
    monkeypatch.setattr(restore_record, "ETCD_KEPT_DIR", str(kept))
    (data / "member").mkdir(parents=True)
    (data / "member" / "db").write_text("before")
    staged = data / f"k8sboot-restore-{TAG}" / "member"
    staged.mkdir(parents=True)
    (staged / "db").write_text("restored")
    state = StateDir(tmp_path / "state").ensure()
    restore_record.write(
        state, RestoreRecord(TAG, "lab-1", "/backups", ["cp1"], ["cp1"], False, "", "stopped")
    )
    ctx = SimpleNamespace(state=state, notes=[])
    executor = SimpleNamespace(
        ctx=ctx, transport=FakeTransport(cp1=LocalShell("cp1")), progress=lambda *_: None
    )
    return executor, data, kept / TAG


def _db(path: Path) -> str:
    return (path / "db").read_text()


def test_the_swap_keeps_the_data_outside_kubeadm_and_runs_again_safely(host) -> None:
    executor, data, kept = host
    swap = SwapDataDirs(("cp1",), TAG, external=False)
    etcd_restore.swap(executor, swap)
    assert _db(data / "member") == "restored" and _db(kept / "member") == "before"
    assert not (data / f"k8sboot-restore-{TAG}").exists()
    assert not any(p.name.startswith("member.before") for p in data.iterdir())
    etcd_restore.swap(executor, swap)  # resumed after the swap: nothing moves
    assert _db(data / "member") == "restored" and _db(kept / "member") == "before"
    assert restore_record.read(executor.ctx.state).phase == "swapped"


def test_a_swap_interrupted_half_way_is_finished(host) -> None:
    executor, data, kept = host
    kept.mkdir(parents=True)
    (data / "member").rename(kept / "member")  # killed between the two moves
    etcd_restore.swap(executor, SwapDataDirs(("cp1",), TAG, external=False))
    assert _db(data / "member") == "restored" and _db(kept / "member") == "before"


def test_a_swap_with_nothing_staged_refuses_and_says_how_to_undo(host) -> None:
    executor, data, _kept = host
    subprocess.run(["rm", "-rf", str(data / f"k8sboot-restore-{TAG}")], check=True)
    with pytest.raises(MachineError) as failed:
        etcd_restore.swap(executor, SwapDataDirs(("cp1",), TAG, external=False))
    assert "no restored data" in str(failed.value)
    assert f"`k8sboot etcd restore --rollback {TAG} --yes` undoes it" in str(failed.value)
    assert _db(data / "member") == "before", "the data in place is not touched"


def test_the_rollback_puts_the_data_back_and_keeps_the_restored(host) -> None:
    executor, data, kept = host
    etcd_restore.swap(executor, SwapDataDirs(("cp1",), TAG, external=False))
    back = RollBackData(("cp1",), TAG, external=False)
    etcd_restore.roll_back(executor, back)
    assert _db(data / "member") == "before"
    assert _db(kept / "member.restored") == "restored"
    etcd_restore.roll_back(executor, back)  # again: nothing moves
    assert _db(data / "member") == "before" and _db(kept / "member.restored") == "restored"


def test_a_rollback_before_the_swap_leaves_the_data_and_drops_the_staged_copy(host) -> None:
    executor, data, _kept = host
    etcd_restore.roll_back(executor, RollBackData(("cp1",), TAG, external=False))
    assert _db(data / "member") == "before"
    assert not (data / f"k8sboot-restore-{TAG}").exists()
