"""Preflight: what must hold on the hosts before k8sboot changes anything.

Each check says what to fix. A check that cannot apply (inside a container, on a host
kubeadm already configured) says so and why: it never pretends to pass.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from k8sboot.facts import Facts, HostFacts
from k8sboot.kubeadm_node import API_SERVER_PORT, BRIDGE_NF_CALL_IPTABLES
from k8sboot.spec import Cluster, Host

Status = Literal["ok", "fail", "skip", "warn"]

SUPPORTED_OS = {"debian": ("11", "12", "13"), "ubuntu": ("22.04", "24.04")}
ARCHITECTURES = ("x86_64", "aarch64")
CONTROL_PLANE_PORTS = (API_SERVER_PORT, 2379, 2380, 10250, 10257, 10259)
WORKER_PORTS = (10250,)
MAX_CLOCK_SKEW = 30.0  # seconds; certificates issued on one host must be valid on another


@dataclass(frozen=True)
class Check:
    host: str  # "" for checks across hosts
    name: str
    status: Status
    detail: str

    def __str__(self) -> str:
        where = f"{self.host}: " if self.host else ""
        return f"{where}{self.name}: {self.detail}"


def run_checks(cluster: Cluster, facts: Facts) -> list[Check]:
    checks: list[Check] = []
    for host in cluster.hosts:
        checks += _host_checks(cluster, host, facts[host.name])
    checks += _cross_host_checks(cluster, facts)
    return checks


def _host_checks(cluster: Cluster, host: Host, found: HostFacts) -> list[Check]:
    name = host.name
    checks = []
    os_id, version = found.os.id, found.os.version_id
    if version in SUPPORTED_OS.get(os_id, ()):
        checks.append(Check(name, "os", "ok", found.os.pretty))
    else:
        checks.append(
            Check(
                name,
                "os",
                "fail",
                f"{found.os.pretty or os_id} is not "
                "supported; use Debian 11-13 or Ubuntu 22.04/24.04",
            )
        )
    arch_ok = found.machine in ARCHITECTURES
    checks.append(
        Check(
            name,
            "architecture",
            "ok" if arch_ok else "fail",
            found.machine if arch_ok else f"{found.machine} is not x86_64 or aarch64",
        )
    )
    if not found.systemd:
        checks.append(
            Check(
                name,
                "init system",
                "fail",
                "systemd is not running; the kubelet and containerd need it",
            )
        )
    if host.has("control-plane"):
        cpus_ok = found.cpus >= 2
        checks.append(
            Check(
                name,
                "CPUs",
                "ok" if cpus_ok else "fail",
                f"{found.cpus}" + ("" if cpus_ok else "; a control plane needs 2"),
            )
        )
        mem = found.mem_mib
        checks.append(
            Check(
                name,
                "memory",
                "ok" if mem >= 1700 else "fail",
                f"{mem} MiB" + ("" if mem >= 1700 else "; a control plane needs 1700"),
            )
        )
    checks.append(_swap(found))
    checks.append(_modules(found))
    if found.interface_of(host.ip) is None:
        checks.append(
            Check(
                name,
                "node IP",
                "fail",
                f"{host.ip} is not an address of this host; fix hosts[].nodeIP",
            )
        )
    else:
        checks.append(Check(name, "node IP", "ok", f"{host.ip} on {found.interface_of(host.ip)}"))
    checks.append(_ports(host, found))
    return checks


def _swap(found: HostFacts) -> Check:
    swap = found.swap_mib
    if not swap:
        return Check(found.name, "swap", "ok", "off")
    if found.container:
        return Check(
            found.name,
            "swap",
            "fail",
            f"{swap} MiB in use by the host kernel; a {found.container} container "
            "cannot turn it off: turn swap off on the host",
        )
    return Check(found.name, "swap", "ok", f"{swap} MiB in use; k8sboot turns it off")


def _modules(found: HostFacts) -> Check:
    modules = found.modules
    missing = [m for m, present in modules.items() if not present]
    if not found.container:
        detail = "loaded" if not missing else f"k8sboot loads {', '.join(missing)}"
        return Check(found.name, "kernel modules", "ok", detail)
    # A container cannot load modules. Say what the host kernel provides instead of
    # pretending the check passed.
    bridge = found.sysctl(BRIDGE_NF_CALL_IPTABLES)
    if "overlay" in missing or bridge is None:
        return Check(
            found.name,
            "kernel modules",
            "fail",
            f"inside a {found.container} container modules cannot be loaded, and the "
            "host kernel lacks "
            + ", ".join(
                ([] if "overlay" not in missing else ["overlay"])
                + ([] if bridge is not None else ["br_netfilter"])
            )
            + "; load them on the host",
        )
    return Check(
        found.name,
        "kernel modules",
        "skip",
        f"inside a {found.container} container modules cannot be loaded; the host "
        "kernel provides overlay and bridge netfilter",
    )


def _ports(host: Host, found: HostFacts) -> Check:
    if found.kubeadm_configured:
        return Check(found.name, "ports", "skip", "kubeadm already runs here")
    wanted = CONTROL_PLANE_PORTS if host.has("control-plane") else WORKER_PORTS
    busy = sorted(set(wanted) & set(found.ports))
    if busy:
        return Check(
            found.name,
            "ports",
            "fail",
            f"{', '.join(map(str, busy))} already in use; stop what listens there",
        )
    return Check(found.name, "ports", "ok", "free: " + ", ".join(map(str, wanted)))


def _cross_host_checks(cluster: Cluster, facts: Facts) -> list[Check]:
    checks = []
    hosts = [facts[h.name] for h in cluster.hosts]
    for label in ("hostnames", "MAC addresses", "product_uuid", "machine-id"):
        values = {f.name: f.identity[label] for f in hosts if f.identity[label]}
        owners: dict[str, list[str]] = defaultdict(list)
        for host, items in values.items():
            for item in items:
                owners[item].append(host)
        clashes = {v: h for v, h in owners.items() if len(h) > 1}
        if clashes:
            detail = "; ".join(f"{v} on {', '.join(h)}" for v, h in clashes.items())
            checks.append(
                Check(
                    "", f"unique {label}", "fail", f"{detail}: cloned machines must be made unique"
                )
            )
        elif label == "product_uuid" and not values:
            checks.append(
                Check(
                    "", "unique product_uuid", "skip", "no host exposes a product_uuid (containers)"
                )
            )
        else:
            checks.append(Check("", f"unique {label}", "ok", "no duplicates"))
    skews = {f.name: f.skew for f in hosts}
    spread = max(skews.values()) - min(skews.values()) if skews else 0.0
    worst = max(skews, key=lambda n: abs(skews[n])) if skews else ""
    if spread > MAX_CLOCK_SKEW:
        checks.append(
            Check(
                "",
                "clock skew",
                "fail",
                f"clocks differ by {spread:.0f}s (worst: {worst}); run NTP on every host",
            )
        )
    else:
        checks.append(Check("", "clock skew", "ok", f"within {spread:.1f}s"))
    return checks
