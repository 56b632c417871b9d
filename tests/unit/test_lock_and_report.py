from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from k8sboot.actions import WriteFiles
from k8sboot.lock import ClusterLock, Locked
from k8sboot.render import RenderedFile
from k8sboot.report import JsonReporter
from k8sboot.runlog import Masker, RunLog
from k8sboot.state import StateDir, write_private


def test_second_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with ClusterLock(tmp_path / "lock", "up"):
        with pytest.raises(Locked, match=r"\(pid \d+\) is running `k8sboot up`") as caught:
            ClusterLock(tmp_path / "lock", "reset").acquire()
        assert caught.value.exit_code == 3
    assert not (tmp_path / "lock").exists()


def test_stale_lock_of_a_crashed_run_is_taken_over(tmp_path: Path) -> None:
    record = {
        "holder": "x@y",
        "host": "elsewhere",
        "pid": 1,
        "command": "up",
        "started": time.time() - 999,
        "heartbeat": time.time() - 999,
    }
    (tmp_path / "lock").write_text(json.dumps(record))
    with ClusterLock(tmp_path / "lock", "up"):
        assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()


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
