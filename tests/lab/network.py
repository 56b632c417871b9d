"""The lab's host-only network: one bridge per lab, and per-machine veths to cut and restore.

The bridge owns SUBNET.1/24 and nothing else: no NAT, and forwarding of packets that arrive
on it is switched off, so lab machines reach each other and this host, never the outside.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

from tests.lab.host import LabError


class NetworkError(LabError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def links() -> list[dict]:
    return json.loads(_ip("-j", "link", "show").stdout or "[]")


def links_with_prefix(prefix: str) -> list[str]:
    return sorted(link["ifname"] for link in links() if link["ifname"].startswith(prefix))


def _write_sysctl(path: str, value: str) -> None:
    # OSError: IPv6 disabled on the host, or a read-only /proc: nothing to switch off.
    with contextlib.suppress(OSError):
        Path(path).write_text(value)


def ensure_bridge(bridge: str, subnet: str) -> None:
    """Create the bridge with SUBNET.1/24 (idempotent)."""
    if not link_exists(bridge):
        _ip("link", "add", "name", bridge, "type", "bridge")
    address = f"{subnet}.1/24"
    current = json.loads(_ip("-j", "addr", "show", "dev", bridge).stdout or "[]")
    have = {
        f"{a['local']}/{a['prefixlen']}"
        for entry in current
        for a in entry.get("addr_info", [])
        if a.get("family") == "inet"
    }
    if address not in have:
        _ip("addr", "add", address, "dev", bridge)
    # Host-only: never route what lab machines send towards other networks, and keep
    # IPv6 (link-local chatter, router solicitations) off the lab segment.
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding", "0")
    _write_sysctl(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6", "1")
    _ip("link", "set", bridge, "up")


def delete_link(name: str) -> None:
    if link_exists(name):
        _ip("link", "del", name, check=False)


def set_link_up(name: str, up: bool) -> None:
    if not link_exists(name):
        raise NetworkError(f"no network link {name} (is the machine running?)")
    _ip("link", "set", name, "up" if up else "down")


def link_is_up(name: str) -> bool:
    if not link_exists(name):
        return False
    info = json.loads(_ip("-j", "link", "show", name).stdout)
    return "UP" in info[0].get("flags", [])


@contextlib.contextmanager
def unreachable_from_here(table: str, addresses: list[str]):
    """While the block runs, this host opens no new connection to `addresses` (its
    established ones, and connections the machines open to it, go on): machines the
    operator can reach only through another one. One nftables table, deleted afterwards."""
    listed = ", ".join(addresses)
    script = (
        f"table inet {table} {{\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {{ {listed} }} ct state new reject\n"
        "  }\n"
        "}\n"
    )
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"nft: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
