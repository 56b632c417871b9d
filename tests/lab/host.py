"""Host-side helpers of the lab: running commands, and finding what LXC left on the host
(containers, their directories, mounts, cgroups and processes)."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LXC_PATH = Path("/var/lib/lxc")


class LabError(RuntimeError):
    pass


@dataclass
class Result:
    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> Result:
        if self.returncode != 0:
            raise LabError(
                f"`{self.command}` exited {self.returncode}\n"
                f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}"
            )
        return self


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    log: Path | None = None,
) -> Result:
    """Run a host command; with log, its output goes (appended) there instead of memory."""
    shown = " ".join(shlex.quote(c) for c in cmd)
    if log is not None:
        with open(log, "a") as out:
            out.write(f"\n$ {shown}\n")
            out.flush()
            proc = subprocess.run(
                cmd,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        result = Result(shown, proc.returncode, "", "")
        if check and proc.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-40:])
            raise LabError(f"`{shown}` exited {proc.returncode}; log {log}:\n{tail}")
        return result
    proc = subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    result = Result(shown, proc.returncode, proc.stdout, proc.stderr)
    return result.check() if check else result


def lxc_state(container: str) -> str:
    """RUNNING, STOPPED, ... or NOT_FOUND (fast: no Vagrant involved)."""
    proc = subprocess.run(["lxc-info", "-s", "-H", "-n", container], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "NOT_FOUND"


def lxc_containers() -> list[str]:
    proc = subprocess.run(["lxc-ls", "-1"], capture_output=True, text=True)
    return proc.stdout.split() if proc.returncode == 0 else []


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(text.rstrip("\n") + "\n")


def lxc_dirs(prefix: str) -> list[str]:
    if not LXC_PATH.is_dir():
        return []
    return sorted(p.name for p in LXC_PATH.iterdir() if p.name.startswith(prefix))


def mounts_under(roots: Iterable[Path]) -> list[str]:
    prefixes = [str(r) + "/" for r in roots]
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if any(point.startswith(p) or point + "/" == p for p in prefixes):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def cgroup_dirs(prefix: str) -> list[Path]:
    """Cgroups LXC made for this lab's containers (payload and monitor), on every hierarchy."""
    root = Path("/sys/fs/cgroup")
    names = (f"lxc.payload.{prefix}", f"lxc.monitor.{prefix}")
    hierarchies = [root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    found = []
    for hierarchy in hierarchies:
        try:
            found += [e for e in hierarchy.iterdir() if e.is_dir() and e.name.startswith(names)]
        except OSError:
            continue
    return sorted(found)


def pivot_cgroups() -> list[Path]:
    return sorted(Path("/sys/fs/cgroup").glob("*/lxc.pivot")) + sorted(
        Path("/sys/fs/cgroup").glob("lxc.pivot")
    )


def remove_cgroup(path: Path) -> None:
    """rmdir a cgroup tree bottom-up (a cgroup directory can only go once it is empty)."""
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def kill(pid: int) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)
