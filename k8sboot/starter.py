"""The commented starter cluster file that `k8sboot init` writes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from k8sboot.errors import UserError
from k8sboot.kubeadm_node import API_SERVER_PORT
from k8sboot.render import render_template


@dataclass
class StarterHost:
    name: str
    address: str
    roles: list[str]
    node_ip: str | None = None
    ssh: dict[str, object] | None = None


@dataclass
class Starter:
    name: str
    version: str
    hosts: list[StarterHost] = field(default_factory=list)
    endpoint_address: str | None = None
    ssh_user: str = "root"
    ssh_key: str | None = None

    def render(self) -> str:
        control_planes = sum("control-plane" in h.roles for h in self.hosts)
        if self.endpoint_address:
            endpoint_type = "kube-vip"
        elif control_planes > 1:
            raise UserError(
                f"{control_planes} control planes need a virtual IP: pass --endpoint ADDRESS"
            )
        else:
            endpoint_type = "first-control-plane"
        return render_template(
            "cluster.yaml.j2",
            name=self.name,
            version=self.version,
            hosts=self.hosts,
            endpoint_type=endpoint_type,
            endpoint_address=self.endpoint_address,
            api_server_port=API_SERVER_PORT,
            ssh_user=self.ssh_user,
            ssh_key=self.ssh_key,
        )


def numbered_hosts(control_planes: int, workers: int, addresses: list[str]) -> list[StarterHost]:
    """cp1..cpN and w1..wM on the given addresses; one address means consecutive ones."""
    count = control_planes + workers
    if control_planes < 1:
        raise UserError("--control-planes: a cluster needs at least 1")
    if workers < 0:
        raise UserError("--workers: must be 0 or more")
    try:
        parsed = [ipaddress.ip_address(a.strip()) for a in addresses if a.strip()]
    except ValueError as exc:
        raise UserError(f"--addresses: {exc}") from None
    if len(parsed) == 1 and count > 1:
        parsed = _counted_up(parsed[0], count)
    if len(parsed) != count:
        raise UserError(
            f"--addresses: {len(parsed)} addresses for {count} hosts; give {count}, or one "
            "to count up from"
        )
    names = [f"cp{i + 1}" for i in range(control_planes)] + [f"w{i + 1}" for i in range(workers)]
    return [
        StarterHost(
            name=name,
            address=str(address),
            roles=["control-plane"] if name.startswith("cp") else ["worker"],
        )
        for name, address in zip(names, parsed, strict=True)
    ]


def _counted_up(
    first: ipaddress.IPv4Address | ipaddress.IPv6Address, count: int
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """`count` consecutive addresses from `first`, all in its /24 (IPv4) or /64 (IPv6):
    counting past the end of a network would give its broadcast address or another
    network's, which is seldom what the operator meant."""
    prefix = 24 if first.version == 4 else 64
    network = ipaddress.ip_network(f"{first}/{prefix}", strict=False)
    last_usable = int(network.broadcast_address) - (1 if first.version == 4 else 0)
    if int(first) + count - 1 > last_usable:
        raise UserError(
            f"--addresses: {count} addresses counted up from {first} run past the end of "
            f"{network}; list them instead, comma-separated (--addresses A,B,C)"
        )
    return [first + i for i in range(count)]


def vagrant_hosts(spec_hosts: list[dict]) -> list[StarterHost]:
    """Starter entries for hosts in cluster-file form (see k8sboot.vagrant)."""
    return [
        StarterHost(
            name=h["name"],
            address=h["address"],
            roles=h["roles"],
            node_ip=h.get("nodeIP"),
            ssh=h.get("ssh"),
        )
        for h in spec_hosts
    ]
