from __future__ import annotations

import io
import json
import os
import pwd
import time
from pathlib import Path

import pytest

from k8sboot import lock as lock_module
from k8sboot.actions import WriteFiles
from k8sboot.lock import ClusterLock, Locked
from k8sboot.render import RenderedFile
from k8sboot.report import JsonReporter, TextReporter
from k8sboot.runlog import Masker, RunLog
from k8sboot.state import StateDir, write_private

from .lockrace import holders_per_round, write_stale_record


def test_second_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with ClusterLock(tmp_path / "lock", "up"):
        with pytest.raises(Locked, match=r"\(pid \d+\) is running `k8sboot up`") as caught:
            ClusterLock(tmp_path / "lock", "reset").acquire()
        assert caught.value.exit_code == 3
    assert not (tmp_path / "lock").exists()


def test_stale_lock_of_a_crashed_run_is_taken_over(tmp_path: Path) -> None:
    write_stale_record(tmp_path / "lock")
    with ClusterLock(tmp_path / "lock", "up"):
        assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()


def test_processes_starting_together_let_exactly_one_in(tmp_path: Path) -> None:
    counts = holders_per_round(tmp_path / "lock", processes=6, rounds=50)
    assert counts == [1] * 50


def test_processes_finding_a_stale_lock_together_let_exactly_one_take_it_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock"
    counts = holders_per_round(
        path, processes=6, rounds=50, before_round=lambda: write_stale_record(path)
    )
    assert counts == [1] * 50


def test_a_run_taken_over_leaves_the_new_holders_record_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock_module, "HEARTBEAT", 0.01)
    path = tmp_path / "lock"
    silent = ClusterLock(path, "up")
    silent.acquire()
    written = json.loads(path.read_text())["heartbeat"]
    deadline = time.monotonic() + 5
    while json.loads(path.read_text())["heartbeat"] == written:
        assert time.monotonic() < deadline, "the holder never refreshed its heartbeat"
        time.sleep(0.01)
    monkeypatch.setattr(lock_module, "STALE_AFTER", 0.0)  # as if it had been silent too long
    successor = ClusterLock(path, "reset")
    successor.acquire()
    time.sleep(0.1)  # several of the first holder's heartbeats
    silent.release()
    assert json.loads(path.read_text())["command"] == "reset"
    successor.release()
    assert not path.exists()


def test_an_unreadable_lock_file_is_taken_over_only_once_it_is_old(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("")  # as if another writer were between creating and filling it
    with pytest.raises(Locked, match="holds no readable record"):
        ClusterLock(path, "up").acquire()
    long_ago = time.time() - 999
    os.utime(path, (long_ago, long_ago))
    with ClusterLock(path, "up"):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_holder_is_named_without_user_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    with ClusterLock(tmp_path / "lock", "up"), pytest.raises(Locked) as caught:
        ClusterLock(tmp_path / "lock", "reset").acquire()
    assert str(caught.value).startswith(f"{pwd.getpwuid(os.getuid()).pw_name}@")


def test_lock_of_a_dead_local_process_is_taken_over(tmp_path: Path) -> None:
    lock = ClusterLock(tmp_path / "lock", "up")
    record = {**lock.identity, "pid": 2**22 + 12345, "heartbeat": time.time()}
    (tmp_path / "lock").write_text(json.dumps(record))
    with lock:
        pass


def test_state_files_are_private(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s").ensure()
    assert (state.root.stat().st_mode & 0o777) == 0o700
    write_private(state.kubeconfig, b"secret")
    assert (state.kubeconfig.stat().st_mode & 0o777) == 0o600


def test_secrets_are_masked_in_log_and_events(tmp_path: Path) -> None:
    masker = Masker()
    masker.add("abcdef.0123456789abcdef")
    log = RunLog(tmp_path / "run.log", masker)
    log.write("cp1", "kubeadm join --token abcdef.0123456789abcdef")
    log.close()
    assert "0123456789abcdef" not in (tmp_path / "run.log").read_text()
    assert (tmp_path / "run.log").stat().st_mode & 0o777 == 0o600
    stream = io.StringIO()
    reporter = JsonReporter(masker, stream)
    reporter.progress("cp1", "token abcdef.0123456789abcdef created")
    action = WriteFiles("w1", (RenderedFile(Path("/etc/x"), "c"),))  # type: ignore[arg-type]
    reporter.action_finished("files", action, 0.5, ["w1"])
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert events[0]["message"] == "token <masked> created"
    assert events[1] == {
        **events[1],
        "event": "action_finished",
        "changed": ["w1"],
        "duration": 0.5,
    }


def test_verbose_text_output_says_what_each_action_did_and_why() -> None:
    from k8sboot.cluster.node_setup import Converge

    stream = io.StringIO()
    converge = Converge((("w1", ("prepare",)),), (("w1", "prepare", "swap is on"),))
    quiet = TextReporter(stream=stream)
    quiet.action_finished("node setup (Ansible)", converge, 3.2, ["w1"])
    assert stream.getvalue() == ""
    TextReporter(verbose=1, stream=stream).action_finished(
        "node setup (Ansible)", converge, 3.2, ["w1"]
    )
    assert stream.getvalue() == "  w1: Ansible roles w1: prepare (swap is on) (3.2s)\n"
