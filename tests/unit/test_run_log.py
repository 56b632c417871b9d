"""The run log: it ends with how the command ended, and old logs are pruned."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot import pipeline, runlog, workflows
from k8sboot.cli.app import cli
from k8sboot.errors import MachineError
from k8sboot.facts import Facts
from k8sboot.runlog import SECRETS, RunLog

from .conftest import BASE

TOKEN = "abcdef.0123456789abcdef"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(BASE))
    monkeypatch.setattr(pipeline, "require_ssh_client", lambda: None)
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext({}))
    return lambda *args: CliRunner().invoke(cli, list(args), catch_exceptions=False)


def logs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / ".k8sboot" / "test" / "logs").glob("*.log"))


def test_a_run_that_cannot_connect_logs_the_error_and_exit_code(run, tmp_path, monkeypatch):
    SECRETS.add(TOKEN)  # learned earlier in the run, as a join token is

    def unreachable(*_: object, **__: object) -> Facts:
        raise MachineError(f"cp1: cannot reach 10.0.0.11:22 over SSH: timed out ({TOKEN})")

    monkeypatch.setattr(pipeline, "gather", unreachable)
    result = run("up")
    assert result.exit_code == 1
    (log,) = logs(tmp_path)
    lines = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert lines[-2:] == [
        "k8sboot: error: cp1: cannot reach 10.0.0.11:22 over SSH: timed out (<masked>)",
        "k8sboot: exit code 1",
    ]
    assert log.stat().st_mode & 0o777 == 0o600


def test_a_run_refused_by_the_lock_logs_why(run, tmp_path: Path) -> None:
    from k8sboot.lock import ClusterLock

    state = tmp_path / ".k8sboot" / "test"
    state.mkdir(parents=True)
    with ClusterLock(state / "lock", "up"):
        assert run("up").exit_code == 3
    (log,) = logs(tmp_path)
    ending = log.read_text().splitlines()[-2:]
    assert "is running `k8sboot up` on this cluster" in ending[0]
    assert ending[1].endswith("k8sboot: exit code 3")


def test_a_run_that_succeeds_ends_its_log_with_exit_code_0(run, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: Facts(hosts={}))
    nothing = pipeline.Workflow("up", [], preflight=False, needs_all_hosts=False)
    monkeypatch.setattr(workflows, "up", lambda: nothing)
    assert run("up").exit_code == 0
    (log,) = logs(tmp_path)
    assert log.read_text().splitlines()[-1].endswith(" k8sboot: exit code 0")


def _old_logs(directory: Path, count: int, age_days: float) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        path = directory / f"old-{age_days}-{index:03}.log"
        path.write_text("x\n")
        then = time.time() - age_days * 86400 - index  # distinct times, oldest last
        os.utime(path, (then, then))
        made.append(path)
    return made


def test_old_logs_are_pruned_by_count_and_age(tmp_path: Path) -> None:
    recent = _old_logs(tmp_path, runlog.KEEP_LOGS + 5, age_days=1)
    stale = _old_logs(tmp_path, 3, age_days=runlog.KEEP_DAYS + 1)
    log = RunLog.for_run(tmp_path, "up")
    log.close()
    kept = set(tmp_path.glob("*.log"))
    assert len(kept) == runlog.KEEP_LOGS
    assert log.path in kept
    assert kept - {log.path} == set(recent[: runlog.KEEP_LOGS - 1])  # the newest others
    assert not kept & set(stale)


def test_the_current_log_is_never_pruned(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runlog, "KEEP_LOGS", 0)
    monkeypatch.setattr(runlog, "KEEP_DAYS", -1)  # as if every log were too old
    _old_logs(tmp_path, 2, age_days=0)
    log = RunLog.for_run(tmp_path, "up")
    log.close()
    assert list(tmp_path.glob("*.log")) == [log.path]
