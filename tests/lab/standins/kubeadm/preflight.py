"""The preflight checks that mean something on a lab machine, named as upstream names them
(so `--ignore-preflight-errors=Port-6443,NumCPU` works the same)."""

from __future__ import annotations

import os
import shutil
import socket

from ..paths import TEST_MODE, host
from .errors import PreflightError


class Check:
    def __init__(self, name: str, error: str | None, warning: bool = False):
        self.name, self.error, self.warning = name, error, warning


def port_free(port: int) -> Check:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's net.Listen does
    try:
        s.bind(("", port))
        err = None
    except OSError:
        err = f"Port {port} is in use"
    finally:
        s.close()
    return Check(f"Port-{port}", err)


def file_available(path: str) -> Check:
    name = "FileAvailable-" + path.replace("/", "-")
    return Check(name, f"{path} already exists" if os.path.exists(host(path)) else None)


def dir_available(path: str) -> Check:
    name = "DirAvailable-" + path.replace("/", "-")
    real = host(path)
    busy = os.path.isdir(real) and any(os.scandir(real))
    return Check(name, f"{path} is not empty" if busy else None)


def cri(socket_url: str) -> Check:
    path = socket_url.removeprefix("unix://")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(host(path))
        err = None
    except OSError as e:
        err = (
            f'container runtime is not running: output: time="" level=fatal msg="validate '
            f'service connection: validate CRI v1 runtime API for endpoint \\"{socket_url}\\": '
            f'rpc error: code = Unavailable desc = connection error: desc = \\"transport: '
            f'Error while dialing: dial unix {path}: connect: {e.strerror or e}\\""\n, error: '
            "exit status 1"
        )
    finally:
        s.close()
    return Check("CRI", err)


def ip_forward() -> Check:
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            ok = f.read().strip() == "1"
    except OSError:
        ok = False
    return Check(
        "FileContent--proc-sys-net-ipv4-ip_forward",
        None if ok else "/proc/sys/net/ipv4/ip_forward contents are not set to 1",
    )


def resources() -> list[Check]:
    cpus = os.cpu_count() or 1
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return [
        Check(
            "NumCPU",
            None
            if cpus >= 2
            else f"the number of available CPUs {cpus} is less than the required 2",
        ),
        Check(
            "Mem",
            None
            if mem_kb // 1024 >= 1700
            else f"the system RAM ({mem_kb // 1024} MB) is less than the minimum 1700 MB",
        ),
    ]


def kubelet_installed() -> list[Check]:
    out = []
    if shutil.which("kubelet") is None and not TEST_MODE:
        out.append(Check("FileExisting-kubelet", "kubelet not found in system path"))
    if not TEST_MODE and not os.path.exists(
        "/etc/systemd/system/multi-user.target.wants/kubelet.service"
    ):
        out.append(
            Check(
                "Service-Kubelet",
                "kubelet service is not enabled, please run 'systemctl enable kubelet.service'",
                warning=True,
            )
        )
    return out


def is_root() -> Check:
    return Check(
        "IsPrivilegedUser",
        None if os.geteuid() == 0 or TEST_MODE else "user is not running as root",
    )


def run(checks: list[Check], ignore: list[str], log) -> None:
    """Print warnings; raise with every fatal error unless ignored ("all" ignores all)."""
    ignored = {i.strip().lower() for i in ignore if i.strip()}
    fatal = []
    for c in checks:
        if not c.error:
            continue
        if c.warning or "all" in ignored or c.name.lower() in ignored:
            log(f"\t[WARNING {c.name}]: {c.error}")
        else:
            fatal.append(c)
    if fatal:
        lines = "\n".join(f"\t[ERROR {c.name}]: {c.error}" for c in fatal)
        raise PreflightError(
            f"[preflight] Some fatal errors occurred:\n{lines}\n[preflight] If you know what you "
            "are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`"
        )
