"""Lab machines: real systemd machines (LXC system containers) made by `vagrant up` of the
project's own Vagrantfile with the lxc provider, on a host-only bridge of their own.

    lab = Lab()                      # lab 0: bridge k8sb0, 10.213.0.0/24
    lab.up(control_planes=1, workers=2)
    lab.ssh("cp1", "systemctl is-system-running")
    lab.partition("w1"); lab.heal("w1")
    lab.stop("w2"); lab.start("w2")
    subprocess.run(["vagrant", "status"], env=lab.env, cwd=lab.cwd)
    lab.destroy()                    # nothing left behind

Several labs can coexist: each index gets its own bridge, subnet, container names and
working directory. See README.md beside this file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab import network
from tests.lab.backends import LxcBackend, VagrantBackend, parse_ssh_config
from tests.lab.box import Box, ensure_box, vagrant_env
from tests.lab.host import (
    LXC_PATH,
    LabError,
    Result,
    append,
    cgroup_dirs,
    cmdline,
    kill,
    lxc_containers,
    lxc_dirs,
    lxc_state,
    mounts_under,
    pids,
    pivot_cgroups,
    remove_cgroup,
    run,
)
from tests.lab.machines import Machine, Shape

__all__ = [
    "LXC_PATH",
    "REPO_ROOT",
    "Lab",
    "LabError",
    "Machine",
    "Result",
    "Shape",
    "parse_ssh_config",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
WORK_ROOT = Path(os.environ.get("K8SBOOT_LAB_WORKDIR", "/var/tmp/k8sboot-lab"))
MACHINES_FILE = "k8sboot-machines.json"
BACKENDS = ("vagrant", "lxc")


@dataclass
class Lab:
    """One lab: a bridge, a subnet, a working directory and the machines on them.

    index selects bridge k8sb<index>, subnet 10.213.<index>.0/24, container names
    k8sb<index>-<machine> and workdir WORK_ROOT/k8sb<index>. backend "vagrant" (default)
    makes machines with `vagrant up --provider=lxc` of the project's Vagrantfile; "lxc"
    makes the same machines from the same box rootfs with plain LXC and overlay
    snapshots (faster, lighter; no Vagrant state, so `vagrant`/`k8sboot --vagrant` commands
    do not see them).
    """

    index: int = 0
    backend: str = "vagrant"
    project_dir: Path = REPO_ROOT
    workdir: Path | None = None
    shape: Shape | None = field(default=None, init=False)
    box: Box | None = field(default=None, init=False)
    box_name: str | None = field(default=None, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise LabError(f"unknown lab backend {self.backend!r} (one of {', '.join(BACKENDS)})")
        if not 0 <= self.index <= 255:
            raise LabError("lab index must be 0..255")
        self.name = f"k8sb{self.index}"
        self.bridge = self.name
        self.subnet = f"10.213.{self.index}"
        self.workdir = Path(self.workdir or WORK_ROOT / self.name)
        self.dotfile_dir = self.workdir / "vagrant"
        self.known_hosts = self.workdir / "known_hosts"
        self.log = self.workdir / "lab.log"
        self._state_file = self.workdir / "lab.json"
        self._lock_file: object | None = None
        self._machines: dict[str, Machine] = {}
        self._impl = VagrantBackend(self) if self.backend == "vagrant" else LxcBackend(self)
        self._load_state()

    # ------------------------------------------------------------------ environment
    @property
    def cwd(self) -> Path:
        """Where to run `vagrant` (and `k8sboot ... --vagrant`) against this lab."""
        return self.project_dir

    @property
    def env(self) -> dict[str, str]:
        """Environment for running `vagrant` against this lab (with cwd=self.cwd)."""
        shape = self.shape or Shape()
        env = vagrant_env()
        env.update(
            VAGRANT_CWD=str(self.project_dir),
            VAGRANT_DOTFILE_PATH=str(self.dotfile_dir),
            VAGRANT_DEFAULT_PROVIDER="lxc",
            K8SBOOT_CONTROL_PLANES=str(shape.control_planes),
            K8SBOOT_WORKERS=str(shape.workers),
            K8SBOOT_ETCD_HOSTS=str(shape.etcd_hosts),
            K8SBOOT_SUBNET=self.subnet,
            K8SBOOT_LXC_BRIDGE=self.bridge,
            K8SBOOT_LXC_PREFIX=self.name,
        )
        if self.box_name:
            env["K8SBOOT_LXC_BOX"] = self.box_name
        return env

    @property
    def machines_file(self) -> Path:
        return self.dotfile_dir / MACHINES_FILE

    def vagrant(self, *args: str, check: bool = True, timeout: float | None = 900) -> Result:
        """Run `vagrant ARGS` against this lab and return its output."""
        return run(["vagrant", *args], env=self.env, cwd=self.cwd, check=check, timeout=timeout)

    # ------------------------------------------------------------------ lifecycle
    def up(
        self,
        control_planes: int = 1,
        workers: int = 2,
        etcd_hosts: int = 0,
        *,
        fresh: bool = False,
    ) -> list[Machine]:
        """Bring the lab to this shape and return its machines, all running and reachable.

        Existing machines are kept (and started if stopped); machines beyond the shape are
        destroyed. fresh=True destroys everything first. A changed box recipe also starts over.
        """
        shape = Shape(control_planes, workers, etcd_hosts)
        if shape.control_planes < 1:
            raise LabError("a lab needs at least one control-plane machine")
        self._lock()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        t0 = time.monotonic()
        box = ensure_box()
        self.timings["box"] = time.monotonic() - t0
        if box.build_seconds is not None:
            self.timings["box_build"] = box.build_seconds
        old = self.shape
        if fresh or (self.box_name is not None and self.box_name != box.name):
            self._teardown(verify=False, keep_workdir=True)
            old = None
        self.box = box
        self.box_name = box.name
        network.ensure_bridge(self.bridge, self.subnet)
        if old is not None:
            removed = [n for n in old.names() if n not in shape.names()]
            if removed:
                self._impl.destroy(removed)
        existing = set(self._impl.created())
        self.shape = shape
        self._save_state()
        t0 = time.monotonic()
        self._impl.up(shape, grown=old is not None and old != shape)
        self.timings["up"] = time.monotonic() - t0
        self._machines = self._impl.machines(shape)
        for m in self._machines.values():
            if m.name not in existing:
                self.forget_host_key(m.name)
        self.wait_ssh(self.names)
        self.timings["ready"] = time.monotonic() - t0
        return self.machines

    def destroy(self, *, keep_workdir: bool = False) -> None:
        """Destroy every machine, the bridge and the working directory; verify nothing is left."""
        self._lock()
        try:
            t0 = time.monotonic()
            self._teardown(verify=True, keep_workdir=keep_workdir)
            self.timings["destroy"] = time.monotonic() - t0
        finally:
            self._unlock()

    def _teardown(self, *, verify: bool, keep_workdir: bool) -> None:
        self._close_ssh_masters()
        if self.shape is not None or self._impl.created():
            try:
                self._impl.destroy(None)
            except LabError as exc:
                append(self.log, f"destroy failed, purging: {exc}")
        self.purge(keep_workdir=keep_workdir)
        self.shape = None
        self.box_name = None
        self._machines = {}
        if verify:
            left = self.leftovers(include_workdir=not keep_workdir)
            if left:
                raise LabError("lab teardown left behind:\n  " + "\n  ".join(left))

    def purge(self, *, keep_workdir: bool = False) -> None:
        """Forcefully remove everything of this lab, whatever state it is in."""
        prefix = f"{self.name}-"
        for container in lxc_containers():
            if container.startswith(prefix):
                subprocess.run(["lxc-stop", "-k", "-n", container], capture_output=True)
                subprocess.run(["lxc-destroy", "-f", "-n", container], capture_output=True)
        for point in mounts_under([LXC_PATH / c for c in lxc_dirs(prefix)] + [self.workdir]):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for d in lxc_dirs(prefix):
            shutil.rmtree(LXC_PATH / d, ignore_errors=True)
        for pid in self._own_processes():
            kill(pid)
        for cg in cgroup_dirs(prefix):
            remove_cgroup(cg)
        if not lxc_containers():
            # LXC's shared helper cgroup; only removable (and only ours to remove) once no
            # container is left on the host.
            for cg in pivot_cgroups():
                remove_cgroup(cg)
        for link in network.links_with_prefix(prefix):
            network.delete_link(link)
        network.delete_link(self.bridge)
        if self.dotfile_dir.exists() and self.backend == "vagrant":
            # Vagrant's global machine index (in the lab's VAGRANT_HOME) still lists them.
            subprocess.run(
                ["vagrant", "global-status", "--prune"], env=self.env, capture_output=True
            )
        if not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.workdir.parent.rmdir()  # only if no other lab lives there
        else:
            shutil.rmtree(self.dotfile_dir, ignore_errors=True)
            self.known_hosts.unlink(missing_ok=True)
            self._state_file.unlink(missing_ok=True)

    def leftovers(self, *, include_workdir: bool = True) -> list[str]:
        """What of this lab still exists on the host (empty after a clean destroy)."""
        prefix = f"{self.name}-"
        left = [f"container {c}" for c in lxc_containers() if c.startswith(prefix)]
        left += [f"lxc directory {LXC_PATH / d}" for d in lxc_dirs(prefix)]
        left += [f"network link {n}" for n in network.links_with_prefix(prefix)]
        if network.link_exists(self.bridge):
            left.append(f"bridge {self.bridge}")
        left += [f"cgroup {c}" for c in cgroup_dirs(prefix)]
        if not lxc_containers():
            left += [f"cgroup {c}" for c in pivot_cgroups()]
        left += [f"mount {m}" for m in mounts_under([LXC_PATH, self.workdir]) if prefix in m]
        left += [f"process {pid}: {cmdline(pid)}" for pid in self._own_processes()]
        if include_workdir and self.workdir.exists():
            left.append(f"directory {self.workdir}")
        return left

    # ------------------------------------------------------------------ machines
    @property
    def machines(self) -> list[Machine]:
        return list(self._machines.values())

    @property
    def names(self) -> list[str]:
        return list(self._machines)

    def machine(self, name: str) -> Machine:
        try:
            return self._machines[name]
        except KeyError:
            raise LabError(f"no machine {name} in lab {self.name}") from None

    def with_role(self, role: str) -> list[Machine]:
        return [m for m in self.machines if role in m.roles]

    def state(self, name: str) -> str:
        """running | stopped | not_created (straight from LXC, no Vagrant call)."""
        s = lxc_state(self.machine(name).container)
        return {"RUNNING": "running", "STOPPED": "stopped", "NOT_FOUND": "not_created"}.get(
            s, s.lower()
        )

    def stop(self, name: str, *, force: bool = False) -> None:
        """Node loss: a clean shutdown (`vagrant halt`), or force=True to kill it outright."""
        self._close_ssh_masters([name])
        if force:
            run(["lxc-stop", "-k", "-n", self.machine(name).container], timeout=120)
        else:
            self._impl.stop(name)

    def start(self, name: str) -> None:
        """Recovery: start a stopped machine again and wait until SSH answers."""
        self._impl.start(name)
        self.wait_ssh([name])

    def partition(self, name: str) -> None:
        """Cut the machine off the network (its host-side veth goes down)."""
        self._close_ssh_masters([name])
        network.set_link_up(self.machine(name).veth, False)

    def heal(self, name: str) -> None:
        network.set_link_up(self.machine(name).veth, True)

    def is_partitioned(self, name: str) -> bool:
        veth = self.machine(name).veth
        return network.link_exists(veth) and not network.link_is_up(veth)

    def ensure_healthy(self) -> None:
        """Undo what tests did to machines: heal partitions, start stopped machines."""
        for m in self.machines:
            state = self.state(m.name)
            if state == "running" and self.is_partitioned(m.name):
                self.heal(m.name)
            elif state == "stopped":
                self.start(m.name)
            elif state != "running":
                raise LabError(f"machine {m.name} is {state}")

    # ------------------------------------------------------------------ SSH
    def ssh_options(
        self,
        name: str,
        *,
        known_hosts: Path | None = None,
        strict: str = "accept-new",
        connect_timeout: int = 10,
    ) -> list[str]:
        """OpenSSH options that reach this machine with host-key checking: by default trust
        on first use into the lab's known_hosts (strict="yes": known keys only); a changed
        key is always refused."""
        m = self.machine(name)
        options = {
            "IdentitiesOnly": "yes",
            "BatchMode": "yes",
            "UserKnownHostsFile": known_hosts or self.known_hosts,
            "StrictHostKeyChecking": strict,
            "HashKnownHosts": "no",
            "ConnectTimeout": connect_timeout,
            "ServerAliveInterval": 5,
            "ServerAliveCountMax": 3,
            "LogLevel": "ERROR",
        }
        argv = ["-F", "/dev/null", "-i", str(m.ssh_key), "-p", str(m.ssh_port), "-l", m.ssh_user]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        return argv

    def _control_options(self, name: str) -> list[str]:
        path = self._control_path(name)
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={path}", "-o", "ControlPersist=120"]

    def _control_path(self, name: str) -> Path:
        return self.workdir / "ssh" / name

    def ssh(
        self,
        name: str,
        command: str,
        *,
        check: bool = True,
        timeout: float = 120,
        input: str | bytes | None = None,
        reuse: bool = True,
        connect_timeout: int = 10,
    ) -> Result:
        """Run a shell command on a machine as the SSH user (use `sudo` for root)."""
        m = self.machine(name)
        (self.workdir / "ssh").mkdir(mode=0o700, exist_ok=True)
        argv = ["ssh", *self.ssh_options(name, connect_timeout=connect_timeout)]
        if reuse:
            argv += self._control_options(name)
        argv += [m.ssh_host, command]
        data = input.encode() if isinstance(input, str) else input
        try:
            proc = subprocess.run(
                argv,
                input=data,
                capture_output=True,
                timeout=timeout,
                stdin=None if data is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{name}: `{command}` timed out after {timeout}s") from exc
        result = Result(
            f"{name}: {command}",
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        return result.check() if check else result

    def attach(
        self, name: str, command: str, *, check: bool = True, timeout: float = 120
    ) -> Result:
        """Run a shell command as root inside the machine without the network (lxc-attach):
        works while the machine is partitioned or its SSH is broken."""
        m = self.machine(name)
        result = run(
            ["lxc-attach", "-n", m.container, "--clear-env", "--", "/bin/sh", "-c", command],
            timeout=timeout,
            check=False,
        )
        result.command = f"{name} (attach): {command}"
        return result.check() if check else result

    def put(self, name: str, data: bytes | Path, remote: str, *, mode: str = "0644") -> None:
        """Write a file on a machine (as root)."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        q = shlex.quote(remote)
        self.ssh(
            name,
            f"sudo install -D -m {mode} /dev/stdin {q}",
            input=payload,
        )

    def ssh_all(self, command: str, names: Iterable[str] | None = None, **kw) -> dict[str, Result]:
        names = list(self.names if names is None else names)
        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=max(1, min(len(names), 16))) as pool:
            results = pool.map(lambda n: self.ssh(n, command, **kw), names)
            return dict(zip(names, results, strict=True))

    def wait_ssh(self, names: Iterable[str], timeout: float = 120) -> None:
        """Wait until every machine answers over SSH (pinning host keys on first contact)."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        last: dict[str, str] = {}
        while pending:
            results = self.ssh_all("true", pending, check=False, timeout=20)
            for name, result in results.items():
                last[name] = result.stderr.strip()
            pending = [n for n, r in results.items() if not r.ok]
            if pending and time.monotonic() > deadline:
                detail = "; ".join(f"{n}: {last[n]}" for n in pending)
                raise LabError(f"no SSH to {', '.join(pending)} after {timeout}s ({detail})")
            if pending:
                time.sleep(1)

    def forget_host_key(self, name: str) -> None:
        """Drop the pinned host key of a machine (e.g. after it was re-created)."""
        m = self.machine(name)
        if self.known_hosts.exists():
            host = m.ssh_host if m.ssh_port == 22 else f"[{m.ssh_host}]:{m.ssh_port}"
            subprocess.run(
                ["ssh-keygen", "-R", host, "-f", str(self.known_hosts)], capture_output=True
            )
            Path(str(self.known_hosts) + ".old").unlink(missing_ok=True)

    def _close_ssh_masters(self, names: Iterable[str] | None = None) -> None:
        directory = self.workdir / "ssh"
        if not directory.is_dir():
            return
        for sock in list(directory.iterdir()):
            if names is not None and sock.name not in names:
                continue
            subprocess.run(
                ["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "lab"],
                capture_output=True,
                timeout=30,
            )
            sock.unlink(missing_ok=True)

    def _own_processes(self) -> list[int]:
        """Processes that belong to this lab: LXC monitors of its containers and SSH
        connection masters under its working directory."""
        found = []
        monitor = re.compile(rf"^\[lxc monitor\] \S+ {re.escape(self.name)}-")
        for pid in pids():
            cmd = cmdline(pid)
            # An SSH connection master renames itself "ssh: <control path> [mux]".
            if monitor.match(cmd) or cmd.startswith(f"ssh: {self.workdir}/ssh/"):
                found.append(pid)
        return found

    # ------------------------------------------------------------------ state & locking
    def _save_state(self) -> None:
        state = {
            "backend": self.backend,
            "shape": vars(self.shape) if self.shape else None,
            "box": self.box_name,
        }
        self._state_file.write_text(json.dumps(state, indent=1) + "\n")

    def _load_state(self) -> None:
        try:
            state = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return
        if state.get("backend") != self.backend:
            return
        if state.get("shape"):
            self.shape = Shape(**state["shape"])
        self.box_name = state.get("box")
        if self.shape and self._impl.created():
            try:
                self._machines = self._impl.machines(self.shape)
            except LabError:
                self._machines = {}

    def _lock(self) -> None:
        if self._lock_file is not None:
            return
        lock_dir = Path("/run/lock")
        lock_dir.mkdir(exist_ok=True)
        handle = open(lock_dir / f"k8sboot-lab-{self.name}.lock", "w")  # noqa: SIM115 (held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LabError(
                f"lab {self.name} is in use by another process; pick another index "
                "(K8SBOOT_LAB_INDEX)"
            ) from None
        self._lock_file = handle

    def _unlock(self) -> None:
        if self._lock_file is not None:
            # Remove the lock file while still holding the lock: nothing is left behind, and
            # a process that opened it meanwhile fails its non-blocking lock and retries.
            Path(self._lock_file.name).unlink(missing_ok=True)  # type: ignore[attr-defined]
            self._lock_file.close()  # type: ignore[attr-defined]
            self._lock_file = None
