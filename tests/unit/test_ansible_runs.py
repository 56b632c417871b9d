"""k8sboot's Ansible adapter run for real on this machine (local connection, no SSH): its
artifacts are private, and Ctrl-C (or SIGTERM) ends a run as it ends any k8sboot command."""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from k8sboot import ansible

from . import ansible_harness as harness

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalRun:
    artifacts: Path
    sigint_before: Any
    sigint_after: Any


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    """A run that succeeds, with extra variables (ansible-runner keeps them in env/)."""
    base = tmp_path_factory.mktemp("run")
    playbooks = harness.playbooks(base, [{"ansible.builtin.command": "true"}])
    before = signal.getsignal(signal.SIGINT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ansible, "data_dir", lambda _: playbooks)
        root = harness.run(base, {"cp1": harness.LOCAL}, extravars={"k8sboot_test": "x"})
    return LocalRun(root, before, signal.getsignal(signal.SIGINT))


def test_artifacts_are_private(local_run: LocalRun) -> None:
    entries = [local_run.artifacts, *local_run.artifacts.rglob("*")]
    names = {path.name for path in entries}
    assert {"hosts.yml", "extravars", "stdout", "stderr", "job_events", "fact_cache"} <= names
    loose = {
        str(path.relative_to(local_run.artifacts)): oct(mode)
        for path in entries
        if (mode := path.stat().st_mode & 0o777) != (0o700 if path.is_dir() else 0o600)
    }
    assert loose == {}


def test_ctrl_c_works_as_before_once_a_run_is_over(local_run: LocalRun) -> None:
    # ansible-runner's own handler would have stayed, swallowing every later Ctrl-C
    # (ansible-runner issue 1075).
    assert local_run.sigint_after is local_run.sigint_before


def _processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in command_line:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (signal.SIGINT, "interrupted"),  # what Ctrl-C in a terminal sends k8sboot
        (signal.SIGTERM, "terminated"),  # a CI job cancelled, a service stopped
    ],
)
def test_ctrl_c_stops_the_playbook_and_ends_the_command_as_interrupted(
    tmp_path: Path, number: int, said: str
) -> None:
    marker = f"k8sboot-test-{secrets.token_hex(4)}"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.ansible_harness", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "K8SBOOT_TEST_MARKER": marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    try:
        assert lines.get(timeout=120) == "task started\n"
        deadline = time.monotonic() + 60
        while not _processes_with(marker):  # the task's own process, not only its event
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the task's process never started"
            time.sleep(0.1)
        process.send_signal(number)
        _, stderr = process.communicate(timeout=60)
        gone_by = time.monotonic() + 10  # the playbook's processes end as k8sboot does
        while _processes_with(marker) and time.monotonic() < gone_by:
            time.sleep(0.1)
        left = _processes_with(marker)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _processes_with(marker):  # this test's own, should it fail
            os.kill(pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == f"{said}; run the same command again to carry on"
    assert "Traceback" not in stderr
    assert left == [], "the playbook's task outlived the interrupted command"
