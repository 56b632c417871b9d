"""The run log: old logs are pruned."""

from __future__ import annotations

import os
import time
from pathlib import Path

from k8sboot import runlog
from k8sboot.runlog import RunLog


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
