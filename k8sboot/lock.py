"""One run at a time per cluster: a lock file in the state directory.

The holder refreshes a heartbeat while it runs; a lock whose heartbeat is older than
STALE_AFTER (a crashed run), or whose process is gone on this machine, is taken over.

Every look at the lock file and every change to it (taking, refreshing, taking over,
releasing) happens under an flock on a guard file beside it, so judging the record and
acting on that judgement is one step: no other run can write or remove the record in
between. The guard is held for milliseconds, never while the run works, and the kernel
drops it when its process dies. The guard file stays: removing it would let two runs flock
two different files of the same name.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from k8sboot.errors import UnsafeError
from k8sboot.state import write_private

HEARTBEAT = 5.0
STALE_AFTER = 30.0


class Locked(UnsafeError):
    """Another run holds the cluster's lock."""


class ClusterLock:
    def __init__(self, path: Path, command: str):
        self.path = path
        self.command = command
        host = socket.gethostname()
        self.identity = {
            "holder": f"{_user()}@{host}",
            "host": host,
            "pid": os.getpid(),
            "command": command,
            "started": time.time(),
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        with self._guarded():
            holder = self._read()
            if holder is not None and not self._stale(holder):
                raise Locked(_held_by(holder, self.path))
            self._write()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._guarded():
            if self._ours():
                self.path.unlink()

    def __enter__(self) -> ClusterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        fd = os.open(self.path.with_name(self.path.name + ".guard"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the flock

    def _write(self) -> None:
        write_private(self.path, json.dumps({**self.identity, "heartbeat": time.time()}).encode())

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            with self._guarded():
                if not self._ours():
                    return  # taken over while this run was silent: the record is another's
                self._write()

    def _ours(self) -> bool:
        holder = self._read()
        return holder is not None and all(holder.get(k) == v for k, v in self.identity.items())

    def _read(self) -> dict | None:
        """The record in the lock file, None when there is none. One that cannot be read
        (garbage, or a writer that does not take the guard) counts as written at the file's
        mtime, so it turns stale like a holder that fell silent."""
        try:
            written = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            record = None
        return record if isinstance(record, dict) else {"heartbeat": written}

    def _stale(self, holder: dict) -> bool:
        if time.time() - holder.get("heartbeat", 0) > STALE_AFTER:
            return True
        if holder.get("host") == self.identity["host"]:
            try:
                os.kill(int(holder.get("pid", 0)), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError):
                return False
        return False


def _held_by(holder: dict, path: Path) -> str:
    if "holder" not in holder:
        return (
            f"{path} holds no readable record; another run may be writing it. "
            f"It counts as stale {STALE_AFTER:.0f}s after it was last written"
        )
    age = time.time() - holder.get("started", time.time())
    return (
        f"{holder.get('holder')} (pid {holder.get('pid')}) is running "
        f"`k8sboot {holder.get('command')}` on this cluster since {age:.0f}s; "
        "wait for it to finish"
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid in the environment or passwd
        return f"uid{os.getuid()}"
