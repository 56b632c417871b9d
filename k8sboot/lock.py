"""One run at a time per cluster: a lock file in the state directory.

The holder refreshes a heartbeat while it runs; a lock whose heartbeat is older than
STALE_AFTER (a crashed run), or whose process is gone on this machine, is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from k8sboot.errors import UnsafeError

HEARTBEAT = 5.0
STALE_AFTER = 30.0


class Locked(UnsafeError):
    """Another run holds the cluster's lock."""


class ClusterLock:
    def __init__(self, path: Path, command: str):
        self.path = path
        self.command = command
        self.identity = {
            "holder": f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": command,
            "started": time.time(),
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = self._read()
                if holder is not None and not self._stale(holder):
                    age = time.time() - holder.get("started", time.time())
                    raise Locked(
                        f"{holder.get('holder')} (pid {holder.get('pid')}) is running "
                        f"`k8sboot {holder.get('command')}` on this cluster since {age:.0f}s; "
                        "wait for it to finish"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: a crashed run left it
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self._record(), handle)
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
            return
        raise Locked(f"could not take the lock {self.path}; another run is starting")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = self._read()
        if (
            holder
            and holder.get("pid") == os.getpid()
            and holder.get("host") == self.identity["host"]
        ):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> ClusterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _record(self) -> dict:
        return {**self.identity, "heartbeat": time.time()}

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            tmp = self.path.with_suffix(".beat")
            tmp.write_text(json.dumps(self._record()))
            os.replace(tmp, self.path)

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

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
