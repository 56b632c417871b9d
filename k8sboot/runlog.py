"""The run log: every command, its exit code and output, in the state directory (0600).

Secrets are never put on a command line (they travel on stdin), and every secret value
k8sboot learns is registered here so that it is masked wherever it might be printed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

MASK = "<masked>"


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


class RunLog:
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
