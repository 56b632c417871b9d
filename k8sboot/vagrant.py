"""Hosts from a Vagrant environment.

Two calls cover all machines: `vagrant status --machine-readable` (which exist, and in
what state) and `vagrant ssh-config` (how to reach the running ones). k8sboot's own
Vagrantfile also publishes each machine's roles and private address in
`<dotfile dir>/k8sboot-machines.json`; the node IP is that private address, never the
NAT address every VirtualBox VM shares (10.0.2.15).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8sboot.errors import MachineError, UserError

METADATA_FILE = "k8sboot-machines.json"
_ROLE_BY_PREFIX = (
    ("cp", "control-plane"),
    ("control", "control-plane"),
    ("master", "control-plane"),
    ("etcd", "etcd"),
    ("e", "etcd"),
)


@dataclass(frozen=True)
class VagrantMachine:
    name: str
    state: str
    provider: str
    roles: tuple[str, ...]
    private_address: str | None
    ssh: dict[str, str]  # HostName, Port, User, IdentityFile from `vagrant ssh-config`

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class VagrantEnvironment:
    root: Path  # the directory holding the Vagrantfile
    dotfile_dir: Path
    machines: list[VagrantMachine]
    endpoint: str | None  # a virtual IP the Vagrantfile set aside for several control planes

    def spec_hosts(self, allow_stopped: bool = False) -> list[dict[str, Any]]:
        """The machines as `hosts:` entries of a cluster file. With `allow_stopped` (for
        maintenance and health, which must see a dead machine), a stopped machine is listed
        at its published private address; it will simply not answer."""
        stopped = [m.name for m in self.machines if not m.running]
        if stopped and allow_stopped:
            return [_spec_host(m) if m.running else _stopped_host(m) for m in self.machines]
        if stopped:
            raise UserError(
                f"Vagrant machines not running: {', '.join(stopped)}; run `vagrant up` "
                "(or `k8sboot up --vagrant`) first"
            )
        return [_spec_host(m) for m in self.machines]


def find_root(start: Path | None = None) -> Path:
    """Where Vagrant looks: VAGRANT_CWD, else the nearest directory up with a Vagrantfile."""
    if os.environ.get("VAGRANT_CWD"):
        return Path(os.environ["VAGRANT_CWD"]).resolve()
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "Vagrantfile").is_file():
            return directory
    raise UserError(f"no Vagrantfile in {here} or above; run k8sboot where your Vagrantfile is")


def dotfile_dir(root: Path) -> Path:
    configured = os.environ.get("VAGRANT_DOTFILE_PATH")
    return (root / configured).resolve() if configured else root / ".vagrant"


def run_vagrant(args: list[str], root: Path, timeout: float = 1800, attempts: int = 1) -> str:
    """Run vagrant; read-only calls may pass attempts=2: another vagrant process writing
    Vagrant's machine index at the same moment makes a reader fail now and then."""
    command = ["vagrant", *args]
    for attempt in range(1, attempts + 1):
        try:
            result = subprocess.run(
                command,
                cwd=root,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"},
            )
        except FileNotFoundError:
            raise UserError(
                "vagrant is not installed (not on PATH); install it or drop --vagrant"
            ) from None
        except subprocess.TimeoutExpired:
            raise MachineError(
                f"`{shlex.join(command)}` took longer than {timeout:.0f} s"
            ) from None
        if result.returncode == 0:
            return result.stdout
        if attempt < attempts:
            time.sleep(2)
    raise MachineError(
        f"`{shlex.join(command)}` failed (exit {result.returncode}): {_vagrant_error(result)}"
    )


def _vagrant_error(result: subprocess.CompletedProcess) -> str:
    """The line that says what went wrong: Vagrant's own message, or the first line of a
    Ruby traceback (its last lines only name vagrant's launcher)."""
    machine_error = [
        line.split(",", 4)[4].replace("\\n", " ").replace("%!(VAGRANT_COMMA)", ",")
        for line in result.stdout.splitlines()
        if ",error-exit," in line and line.count(",") >= 4
    ]
    if machine_error:
        return machine_error[-1][:400]
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return (lines[0] if lines else "no output")[:400]


def parse_status(output: str) -> dict[str, dict[str, str]]:
    """machine -> {"state": ..., "provider": ...} from `vagrant status --machine-readable`."""
    machines: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        fields = line.split(",", 4)
        if len(fields) < 4 or not fields[1]:
            continue
        _, target, kind, *data = fields
        value = data[0].replace("%!(VAGRANT_COMMA)", ",") if data else ""
        entry = machines.setdefault(target, {"state": "unknown", "provider": ""})
        if kind == "state":
            entry["state"] = value
        elif kind == "provider-name":
            entry["provider"] = value
    return machines


def parse_ssh_config(output: str) -> dict[str, dict[str, str]]:
    """machine -> its ssh-config options (first value of each) from `vagrant ssh-config`."""
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in output.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip().strip('"')
        if key == "Host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            current.setdefault(key, value)
    return hosts


def read_environment(start: Path | None = None) -> VagrantEnvironment:
    root = find_root(start)
    status = parse_status(run_vagrant(["status", "--machine-readable"], root, 300, attempts=2))
    dot = dotfile_dir(root)
    metadata = _read_metadata(dot / METADATA_FILE)
    published = {m["name"]: m for m in metadata.get("machines", [])}
    _refuse_id_like_names([*status, *published])
    running = [name for name, entry in status.items() if entry["state"] == "running"]
    ssh = (
        parse_ssh_config(run_vagrant(["ssh-config", *running], root, 300, attempts=2))
        if running
        else {}
    )
    machines = [
        VagrantMachine(
            name=name,
            state=entry["state"],
            provider=entry["provider"],
            roles=tuple(published.get(name, {}).get("roles") or _roles_from_name(name)),
            private_address=published.get(name, {}).get("address"),
            ssh=ssh.get(name, {}),
        )
        for name, entry in status.items()
    ]
    return VagrantEnvironment(root, dot, machines, metadata.get("endpoint"))


def _refuse_id_like_names(names: list[str]) -> None:
    """Vagrant looks a machine name up as the prefix of a machine id in its global index
    before it looks in the Vagrantfile: a name of hex digits only ("e1", "db2") can stand
    for another machine, even one of another project, whenever an id starts with it."""
    for name in names:
        if re.fullmatch(r"[0-9a-f]+", name):
            raise UserError(
                f"Vagrant machine name {name!r} is all hex digits, which Vagrant also takes "
                "for the start of a machine id (it may act on another machine); rename it "
                "in the Vagrantfile, e.g. etcd1"
            )


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); run `vagrant status` to rewrite it") from None


def _roles_from_name(name: str) -> list[str]:
    """For Vagrantfiles that publish no roles: cp1/control1/master1 and etcd1/e-1 by name."""
    for prefix, role in _ROLE_BY_PREFIX:
        if re.fullmatch(rf"{prefix}-?\d*", name):
            return [role]
    return ["worker"]


def _spec_host(machine: VagrantMachine) -> dict[str, Any]:
    ssh = machine.ssh
    if "HostName" not in ssh:
        raise MachineError(f"`vagrant ssh-config` says nothing about {machine.name}")
    address = ssh["HostName"]
    node_ip = machine.private_address
    if node_ip is None:
        if _is_loopback(address):
            raise UserError(
                f"{machine.name}: Vagrant reaches it through {address}, and its Vagrantfile "
                f"publishes no private address ({METADATA_FILE}); use k8sboot's Vagrantfile "
                "or write cluster.yaml with nodeIP"
            )
        node_ip = address
    host: dict[str, Any] = {"name": machine.name, "address": address, "roles": list(machine.roles)}
    if node_ip != address:
        host["nodeIP"] = node_ip
    host["ssh"] = {
        k: v
        for k, v in (
            ("user", ssh.get("User")),
            ("port", int(ssh.get("Port", 22))),
            ("key", ssh.get("IdentityFile")),
        )
        if v
    }
    return host


def _stopped_host(machine: VagrantMachine) -> dict[str, Any]:
    if machine.private_address is None:
        raise UserError(
            f"Vagrant machine {machine.name} is {machine.state} and its Vagrantfile publishes "
            f"no private address ({METADATA_FILE}); start it or write cluster.yaml"
        )
    return {"name": machine.name, "address": machine.private_address, "roles": list(machine.roles)}


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
