"""What a lab is made of: its shape (how many machines of each role) and its machines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROLE_PREFIXES = {"cp": "control-plane", "etcd": "etcd", "w": "worker"}
# Host part of each role's addresses (the Vagrantfile uses the same rule).
ADDRESS_BASE = {"cp": 10, "etcd": 30, "w": 100}


@dataclass(frozen=True)
class Shape:
    control_planes: int = 1
    workers: int = 2
    etcd_hosts: int = 0

    def names(self) -> list[str]:
        return (
            [f"cp{i}" for i in range(1, self.control_planes + 1)]
            + [f"etcd{i}" for i in range(1, self.etcd_hosts + 1)]
            + [f"w{i}" for i in range(1, self.workers + 1)]
        )

    @staticmethod
    def _split(name: str) -> tuple[str, int]:
        prefix = name.rstrip("0123456789")
        if prefix not in ROLE_PREFIXES or prefix == name:
            raise ValueError(f"not a lab machine name: {name!r}")
        return prefix, int(name[len(prefix) :])

    def role_of(self, name: str) -> str:
        return ROLE_PREFIXES[self._split(name)[0]]

    def address_of(self, name: str, subnet: str) -> str:
        prefix, number = self._split(name)
        return f"{subnet}.{ADDRESS_BASE[prefix] + number}"

    def size(self) -> int:
        return self.control_planes + self.workers + self.etcd_hosts


@dataclass(frozen=True)
class Machine:
    name: str
    roles: tuple[str, ...]
    address: str  # the private address on the lab bridge (the node IP)
    ssh_host: str
    ssh_port: int
    ssh_user: str
    ssh_key: Path
    container: str  # the LXC container's name
    veth: str  # host side of its eth0: set it down to cut the machine off
