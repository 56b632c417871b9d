"""The run log: every command, its exit code and output, in the state directory (0600),
ending with how the k8sboot command ended (its exit code, and the error that ended it).

Secrets are never put on a command line (they travel on stdin), and every secret value
k8sboot learns is registered here so that it is masked wherever it might be printed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from k8sboot.state import run_id

MASK = "<masked>"
# Run logs kept in a state directory: the newest KEEP_LOGS, none older than KEEP_DAYS.
KEEP_LOGS = 50
KEEP_DAYS = 30


class Masker:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= 6)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text


# The secrets this process has learned: one masker for the run log, the reports and the
# error line at the top (which may quote a failed command's output).
SECRETS = Masker()


# The run logs this process opened, oldest first: the command line's error boundary
# ends the newest with how the command ended.
OPENED: list[Path] = []


class RunLog:
    @classmethod
    def for_run(cls, directory: Path, command: str, masker: Masker | None = None) -> RunLog:
        """A new log for one run of `command` in `directory`, the logs of older runs
        there pruned."""
        log = cls(directory / f"{run_id()}-{command}.log", masker)
        assert log.path is not None
        OPENED.append(log.path)
        prune(directory, log.path)
        return log

    def __init__(self, path: Path | None, masker: Masker | None = None):
        self.path = path
        self.mask = masker or SECRETS
        self._lock = threading.Lock()
        self._handle = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._handle = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, host: str, text: str) -> None:
        if self._handle is None:
            return
        stamp = time.strftime("%H:%M:%S")
        lines = self.mask(text).rstrip("\n").splitlines() or [""]
        with self._lock:
            for line in lines:
                self._handle.write(f"{stamp} {host}: {line}\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def prune(directory: Path, current: Path) -> None:
    """Remove the run logs beyond the newest KEEP_LOGS and those older than KEEP_DAYS,
    never `current`. A log another run removes at the same moment is no failure."""
    logs = []
    for path in directory.glob("*.log"):
        try:
            logs.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    logs.sort(reverse=True)
    oldest = time.time() - KEEP_DAYS * 86400
    for index, (modified, path) in enumerate(logs):
        if path != current and (index >= KEEP_LOGS or modified < oldest):
            path.unlink(missing_ok=True)


def record_end(path: Path, exit_code: int, error: str | None) -> None:
    """Append how the command ended to its run log: the error (masked) and the exit
    code. A log that is gone (pruned by another run) is left gone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return
    stamp = time.strftime("%H:%M:%S")
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        if error:
            for line in SECRETS(error).splitlines():
                handle.write(f"{stamp} k8sboot: error: {line}\n")
        handle.write(f"{stamp} k8sboot: exit code {exit_code}\n")
