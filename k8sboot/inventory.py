"""Hosts with their roles and SSH settings, and the Ansible inventory made from them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8sboot.spec import Cluster, Host


@dataclass(frozen=True)
class SSHTarget:
    """Everything needed to open an SSH session to one host."""

    name: str
    address: str
    port: int
    user: str
    key: Path | None

    @property
    def needs_sudo(self) -> bool:
        return self.user != "root"


def ssh_target(cluster: Cluster, host: Host) -> SSHTarget:
    return SSHTarget(
        name=host.name,
        address=host.address,
        port=host.ssh.port or cluster.ssh.port,
        user=host.ssh.user or cluster.ssh.user,
        key=host.ssh.key or cluster.ssh.key,
    )


def known_hosts_file(cluster: Cluster) -> Path:
    assert cluster.state_dir is not None, "state_dir is set when the spec is loaded"
    return cluster.state_dir / "known_hosts"


def ssh_option_path(path: Path) -> str:
    """`path` as the value of an OpenSSH option (`-o Name=VALUE`). OpenSSH splits a value
    at whitespace (UserKnownHostsFile takes several files), refuses an unmatched quote and
    expands %-tokens; quoted and escaped like this, it reads back as exactly `path` (but
    for `${`, which OpenSSH expands as an environment variable and has no escape for)."""
    escaped = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def ansible_ssh_args(known_hosts: Path, host_key_policy: str) -> list[str]:
    """ssh options for Ansible: host keys checked against the file k8sboot pins them in.
    Ansible splits its ssh arguments with shlex.split (Connection._split_ssh_args), so
    join them with shlex.join."""
    checking = "accept-new" if host_key_policy == "accept-new" else "yes"
    return [
        "-o", f"UserKnownHostsFile={ssh_option_path(known_hosts)}",
        "-o", f"StrictHostKeyChecking={checking}",
    ]  # fmt: skip


def group_members(cluster: Cluster) -> dict[str, list[Host]]:
    return {
        "control_plane": cluster.control_planes,
        "workers": cluster.with_role("worker"),
        "etcd": cluster.etcd_members,
    }


def host_vars(cluster: Cluster, host: Host) -> dict[str, Any]:
    target = ssh_target(cluster, host)
    hostvars: dict[str, Any] = {
        "ansible_host": target.address,
        "ansible_port": target.port,
        "ansible_user": target.user,
    }
    if target.key:
        hostvars["ansible_ssh_private_key_file"] = str(target.key)
    if target.needs_sudo:
        hostvars["ansible_become"] = True
    hostvars["node_ip"] = host.ip
    if host.interface:
        hostvars["node_interface"] = host.interface
    hostvars["k8sboot_roles"] = list(host.roles)
    return hostvars


def common_vars(cluster: Cluster) -> dict[str, Any]:
    ssh_args = ansible_ssh_args(known_hosts_file(cluster), cluster.ssh.host_key_policy)
    return {
        "ansible_ssh_common_args": shlex.join(ssh_args),
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def ansible_inventory(cluster: Cluster) -> dict[str, Any]:
    """The inventory in Ansible's YAML form (what `ansible-inventory -y` accepts)."""
    return {
        "all": {
            "vars": common_vars(cluster),
            "hosts": {h.name: host_vars(cluster, h) for h in cluster.hosts},
            "children": {
                group: {"hosts": {h.name: {} for h in members}}
                for group, members in group_members(cluster).items()
            },
        }
    }


def ansible_inventory_json(cluster: Cluster) -> dict[str, Any]:
    """The inventory in the JSON form of a dynamic inventory script (`--list`)."""
    groups = group_members(cluster)
    inventory: dict[str, Any] = {
        "_meta": {"hostvars": {h.name: host_vars(cluster, h) for h in cluster.hosts}},
        "all": {"children": list(groups), "vars": common_vars(cluster)},
    }
    for group, members in groups.items():
        inventory[group] = {"hosts": [h.name for h in members]}
    return inventory
