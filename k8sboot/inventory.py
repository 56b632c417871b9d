"""Hosts with their roles and SSH settings, and the Ansible inventory made from them.

How a host is reached is decided here, once, for all three of k8sboot's SSH paths (the
commands' Fabric connection, the bulk copies' and Ansible's OpenSSH): the cluster file's
`ssh` settings, then the operator's ssh_config (User, Port, IdentityFile, HostName,
ProxyJump, ProxyCommand), then k8sboot's defaults; through `ssh.bastion` or the
ssh_config's ProxyJump, with the bastion's host key pinned beside the hosts' ones.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fabric
from paramiko.ssh_exception import ConfigParseError

from k8sboot.errors import UserError
from k8sboot.spec import Cluster, Host

SSH_CLIENT = "ssh"  # OpenSSH's, for bulk transfers and Ansible's connections
# What OpenSSH reads when no -F is given; `ssh.configFile` stands for both, as -F does.
USER_SSH_CONFIG = "~/.ssh/config"
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
DEFAULT_USER = "root"
DEFAULT_PORT = 22


@dataclass(frozen=True)
class SSHTarget:
    """Everything needed to open an SSH session to one host."""

    name: str
    address: str  # what to connect to: the ssh_config's HostName for it, if any
    port: int
    user: str
    key: Path | None
    jump: SSHTarget | None = None  # the bastion it is reached through
    proxy_command: str | None = None  # or the ssh_config's ProxyCommand for it

    @property
    def needs_sudo(self) -> bool:
        return self.user != "root"


def ssh_target(cluster: Cluster, host: Host) -> SSHTarget:
    """The cluster file's settings for `host` (its own, then the cluster's when written
    there), then the ssh_config's for its address, then root, port 22 and the agent."""
    ssh = cluster.ssh
    written = ssh.model_fields_set
    return _resolve(
        ssh.config_file,
        host.name,
        host.address,
        user=host.ssh.user or (ssh.user if "user" in written else None),
        port=host.ssh.port or (ssh.port if "port" in written else None),
        key=host.ssh.key or ssh.key,
        jump=bastion_target(cluster),
    )


def bastion_target(cluster: Cluster) -> SSHTarget | None:
    """`ssh.bastion`: its own settings, then the ssh_config's, then the cluster's user
    and key (a bastion listens on port 22 unless told otherwise)."""
    bastion = cluster.ssh.bastion
    if bastion is None:
        return None
    return _resolve(
        cluster.ssh.config_file,
        "bastion",
        bastion.address,
        user=bastion.user,
        port=bastion.port,
        key=bastion.key,
        jump=None,
        default_user=cluster.ssh.user,
        default_key=cluster.ssh.key,
    )


def _ssh_config(config_file: Path | None) -> fabric.Config:
    """Fabric's configuration with the ssh_config files OpenSSH would read, and nothing
    from Fabric's own configuration files (lazy)."""
    if config_file is not None and not config_file.is_file():
        raise UserError(f"ssh.configFile: {config_file}: no such file")
    config = fabric.Config(
        lazy=True,
        runtime_ssh_path=str(config_file) if config_file else None,
        user_ssh_path=USER_SSH_CONFIG,
        system_ssh_path=SYSTEM_SSH_CONFIG,
    )
    try:
        config.load_ssh_config()
    except (OSError, ConfigParseError, ValueError) as exc:
        where = config_file or USER_SSH_CONFIG
        raise UserError(f"{where}: cannot read it as an ssh_config ({exc})") from None
    return config


def _resolve(
    config_file: Path | None,
    name: str,
    address: str,
    *,
    user: str | None,
    port: int | None,
    key: Path | None,
    jump: SSHTarget | None,
    default_user: str = DEFAULT_USER,
    default_key: Path | None = None,
) -> SSHTarget:
    """`address` as the ssh_config has it (its Host blocks as Fabric loaded them), with
    the values given winning."""
    config = _ssh_config(config_file)
    found = config.base_ssh_config.lookup(address)
    try:
        return SSHTarget(
            name,
            found["hostname"],  # Paramiko's lookup gives the address itself without one
            port or int(found.get("port", DEFAULT_PORT)),
            # Fabric's default would be the local user; k8sboot's is root.
            user or found.get("user") or default_user,
            key or _identity(found) or default_key,
            jump or _proxy_jump(config, address, found),
            None if jump or "proxyjump" in found else found.get("proxycommand"),
        )
    except RecursionError:
        raise UserError(f"{name}: the ssh_config's ProxyJump for {address} loops") from None
    except ValueError as exc:  # a Port or a ProxyJump's port that is no number
        raise UserError(f"{name}: the ssh_config for {address}: {exc}") from None


def _proxy_jump(config: fabric.Config, address: str, found: dict[str, Any]) -> SSHTarget | None:
    """The ssh_config's ProxyJump hops as Fabric chains them (Connections, each the gateway
    of the next). `ProxyJump none` turns off a jump a wider Host block set."""
    if found.get("proxyjump", "none").lower() == "none":
        return None
    # A Connection of its own config: Fabric adds the IdentityFiles it finds to it.
    return _hop(fabric.Connection(address, config=config.clone()).gateway)


def _hop(gateway: object) -> SSHTarget | None:
    """A ProxyJump hop as Fabric made it (a Connection, with the hop before it as its own
    gateway), whose user defaults to the local one as OpenSSH's does."""
    if not isinstance(gateway, fabric.Connection):
        return None
    return SSHTarget(
        gateway.original_host,
        gateway.host,
        gateway.port,
        gateway.user,
        _identity(gateway.ssh_config),
        _hop(gateway.gateway),
        gateway.gateway if isinstance(gateway.gateway, str) else None,
    )


def _identity(found: dict[str, Any]) -> Path | None:
    """The first of the ssh_config's IdentityFiles that exists (OpenSSH would try each)."""
    for path in found.get("identityfile", []):
        if Path(path).expanduser().is_file():
            return Path(path).expanduser()
    return None


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
    """ssh options for Ansible: host keys checked against the file k8sboot pins them in,
    and no ssh_config (what k8sboot honours of it is in each host's variables, as the
    commands' connections have it). Ansible splits its ssh arguments with shlex.split
    (Connection._split_ssh_args), so join them with shlex.join."""
    return [
        "-F", "/dev/null",
        "-o", f"UserKnownHostsFile={ssh_option_path(known_hosts)}",
        "-o", f"StrictHostKeyChecking={_checking(host_key_policy)}",
    ]  # fmt: skip


def _checking(host_key_policy: str) -> str:
    return "accept-new" if host_key_policy == "accept-new" else "yes"


def openssh_login(
    target: SSHTarget, known_hosts: Path, checking: str, connect_timeout: float
) -> list[str]:
    """OpenSSH's options for `target` as the commands' connection reaches it: no
    ssh_config, no prompts, its port, user, key and way through, host keys checked
    against `known_hosts` only (the bastion's too)."""
    options = [
        "-F", "/dev/null",  # neither the user's config nor its multiplexing
        "-o", "BatchMode=yes",
        "-o", f"StrictHostKeyChecking={checking}",
        "-o", f"UserKnownHostsFile={ssh_option_path(known_hosts)}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"ConnectTimeout={max(1, round(connect_timeout))}",
        "-p", str(target.port),
        "-l", target.user,
    ]  # fmt: skip
    if target.key is not None:
        key = ssh_option_path(target.key)
        options += ["-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes"]
    return options + openssh_proxy(target, known_hosts, checking, connect_timeout)


def openssh_proxy(
    target: SSHTarget, known_hosts: Path, checking: str, connect_timeout: float
) -> list[str]:
    """`-o ProxyCommand=...` for a target reached through a bastion (an ssh of its own,
    as strict as the one it serves) or an ssh_config ProxyCommand; nothing otherwise.
    ProxyJump would not do: OpenSSH hands its jump's ssh none of these options."""
    if target.jump is not None:
        jump = target.jump
        hop = [SSH_CLIENT, *openssh_login(jump, known_hosts, checking, connect_timeout)]
        # OpenSSH expands %-tokens in a ProxyCommand, then has the shell run it.
        words = [shlex.quote(word).replace("%", "%%") for word in hop]
        command = " ".join([*words, "-W", "'[%h]:%p'", shlex.quote(jump.address)])
        return ["-o", f"ProxyCommand={command}"]
    if target.proxy_command is not None:  # the ssh_config's, its %-tokens expanded
        return ["-o", f"ProxyCommand={target.proxy_command.replace('%', '%%')}"]
    return []


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
    proxy = openssh_proxy(
        target,
        known_hosts_file(cluster),
        _checking(cluster.ssh.host_key_policy),
        cluster.ssh.connect_timeout,
    )
    if proxy:
        hostvars["ansible_ssh_extra_args"] = shlex.join(proxy)
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
