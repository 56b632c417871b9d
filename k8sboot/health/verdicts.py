"""From what `health` observed to one verdict per check and target. Pure: no machines.

A host that cannot be reached fails its `ssh` check; its other host checks are skipped
(they could not be asked), so one dead machine reads as one failure, not ten.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass
from typing import Literal

from k8sboot.certs.expiry import WARN_DAYS
from k8sboot.etcd.client import client_url, find_member
from k8sboot.health.observe import ClusterObservation, HostObservation, Observations
from k8sboot.spec import Cluster, Host

Status = Literal["ok", "warn", "fail", "skip"]

CLOCK_WARN = 1.0  # seconds: etcd starts complaining about its peers' clocks here
CLOCK_FAIL = 5.0  # seconds: leases and certificates issued now start to misbehave
DB_WARN = 0.80  # of etcd's quota
DB_FAIL = 0.95
MAX_KUBELET_BEHIND = 3  # minors a kubelet may trail the API server (since 1.28)
PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure")
# Every check health makes (on a stacked-etcd cluster), in the order of the table.
CHECKS = (
    "ssh",
    "containerd",
    "kubelet",
    "endpoint",
    "apiserver",
    "certificates",
    "clock",
    "etcd member",
    "etcd db size",
    "etcd leader",
    "etcd alarms",
    "node",
    "node pressure",
    "version skew",
)


@dataclass(frozen=True)
class Verdict:
    check: str
    target: str  # a host, a node, or "cluster"
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def healthy(verdicts: list[Verdict]) -> bool:
    return not any(v.status == "fail" for v in verdicts)


def judge(
    cluster: Cluster,
    seen: Observations,
    warn_days: float = WARN_DAYS,
    removed: frozenset[str] = frozenset(),
) -> list[Verdict]:
    """`removed`: hosts taken out with `node remove` (and left out of `cluster`)."""
    verdicts: list[Verdict] = []
    for host in cluster.hosts:
        verdicts += _host(cluster, host, seen.hosts[host.name], seen, warn_days)
    verdicts += _clock(seen)
    verdicts += _etcd(cluster, seen.cluster, seen.hosts)
    verdicts += _nodes(cluster, seen.cluster, seen.hosts, removed)
    return verdicts


def _skip(check: str, host: str, why: str) -> Verdict:
    return Verdict(check, host, "skip", why)


def _host(
    cluster: Cluster, host: Host, found: HostObservation, seen: Observations, warn_days: float
) -> list[Verdict]:
    name = host.name
    kube_node = host.has("control-plane") or host.has("worker")
    checks = ["containerd", "kubelet", "endpoint"] if kube_node else []
    if host.has("control-plane"):
        checks += ["apiserver", "certificates"]
    if not found.reachable:
        detail = f"host key changed: {found.error}" if found.host_key_changed else f"{found.error}"
        return [Verdict("ssh", name, "fail", detail)] + [
            _skip(c, name, "host not reachable") for c in checks
        ]
    verdicts = [Verdict("ssh", name, "ok", "reachable; host key matches the pinned one")]
    probe = found.probe
    if probe is None:
        return verdicts + [
            Verdict(c, name, "fail", f"probe failed: {found.probe_error}") for c in checks
        ]
    for service in ("containerd", "kubelet") if kube_node else ():
        state = probe["services"].get(service, "unknown")
        verdicts.append(Verdict(service, name, "ok" if state == "active" else "fail", state))
    if kube_node:
        verdicts.append(_readyz("endpoint", name, probe["urls"].get("endpoint"), cluster.endpoint))
    if host.has("control-plane"):
        verdicts.append(_readyz("apiserver", name, probe["urls"].get("readyz"), "local"))
        verdicts.append(_certificates(found, seen, warn_days))
    return verdicts


def _readyz(check: str, host: str, answer: dict | None, where: str) -> Verdict:
    if not answer:
        return Verdict(check, host, "skip", "not asked")
    if answer.get("status") == 200:
        return Verdict(check, host, "ok", f"/readyz ok ({where})")
    if not answer.get("status"):
        return Verdict(check, host, "fail", f"no answer from {where}: {answer.get('error')}")
    failed = [line[3:] for line in answer.get("body", "").splitlines() if line.startswith("[-]")]
    reason = "; ".join(failed) or answer.get("body", "").strip()[:200]
    return Verdict(check, host, "fail", f"/readyz {answer['status']} ({where}): {reason}")


def _certificates(found: HostObservation, seen: Observations, warn_days: float) -> Verdict:
    if found.certificates is None:
        return Verdict("certificates", found.name, "fail", f"{found.certificates_error}")
    worst: dict[str, list[str]] = {"fail": [], "warn": []}
    for cert in found.certificates:
        status, detail = cert.verdict(seen.now, warn_days)
        if status != "ok":
            worst[status].append(f"{cert.name} {detail}")
    if worst["fail"] or worst["warn"]:
        status = "fail" if worst["fail"] else "warn"
        return Verdict("certificates", found.name, status, "; ".join(worst["fail"] + worst["warn"]))
    soonest = min(
        (c for c in found.certificates if c.expires is not None),
        key=lambda c: c.expires,  # type: ignore[arg-type,return-value]
        default=None,
    )
    detail = f"{sum(c.expires is not None for c in found.certificates)} valid"
    if soonest is not None:
        detail += f"; first to expire: {soonest.name}, {soonest.verdict(seen.now)[1]}"
    return Verdict("certificates", found.name, "ok", detail)


def _clock(seen: Observations) -> list[Verdict]:
    offsets = {
        n: (h.clock_offset, h.clock_error)
        for n, h in seen.hosts.items()
        if h.clock_offset is not None
    }
    if not offsets:
        return []
    middle = statistics.median(o for o, _ in offsets.values())
    verdicts = []
    for name, (offset, error) in offsets.items():
        # Only what the measurement cannot explain (half a round trip) counts.
        apart = max(0.0, abs(offset - middle) - error)
        detail = f"{offset - middle:+.2f}s from the hosts' median (+-{error:.2f}s)"
        status: Status = "fail" if apart >= CLOCK_FAIL else "warn" if apart >= CLOCK_WARN else "ok"
        verdicts.append(Verdict("clock", name, status, detail))
    return verdicts


def _etcd(
    cluster: Cluster, found: ClusterObservation, hosts: dict[str, HostObservation]
) -> list[Verdict]:
    if cluster.etcd.topology != "stacked":
        return [Verdict("etcd", "cluster", "skip", "external etcd: see `k8sboot etcd health`")]
    if found.error:
        return [Verdict("etcd", "cluster", "fail", found.error)]
    if found.members is None:
        return [Verdict("etcd", "cluster", "fail", f"no member list: {found.etcd_error}")]
    verdicts: list[Verdict] = []
    health = {h.endpoint: h for h in found.etcd_health}
    status = {s.endpoint: s for s in found.etcd_status}
    for host in cluster.etcd_members:
        member = find_member(found.members, host.name, host.ip)
        url = client_url(host.ip)
        if member is None:
            verdicts.append(Verdict("etcd member", host.name, "fail", "not an etcd member"))
            continue
        answer = health.get(url)
        if answer is None or not answer.healthy:
            why = answer.error if answer else "did not answer"
            verdicts.append(Verdict("etcd member", host.name, "fail", f"unhealthy: {why}"))
            continue
        verdicts.append(
            Verdict("etcd member", host.name, "ok", f"healthy (id {member.hex_id}, {answer.took})")
        )
        if url in status:
            verdicts.append(_db_size(host.name, status[url].db_size, hosts[host.name]))
    known = {client_url(h.ip) for h in cluster.etcd_members}
    for member in found.members:
        if not any(url in known for url in member.client_urls) and not any(
            find_member([member], h.name, h.ip) for h in cluster.etcd_members
        ):
            verdicts.append(
                Verdict(
                    "etcd member",
                    member.name or member.hex_id,
                    "warn",
                    f"member {member.hex_id} ({', '.join(member.peer_urls)}) is no host of the "
                    "cluster file: stale?",
                )
            )
    leaders = {s.leader_id for s in found.etcd_status if s.leader_id}
    names = {m.id: m.name or m.hex_id for m in found.members}
    if len(leaders) == 1:
        leader = next(iter(leaders))
        verdicts.append(Verdict("etcd leader", "cluster", "ok", names.get(leader, f"{leader:x}")))
    elif not leaders:
        verdicts.append(Verdict("etcd leader", "cluster", "fail", "no member reports a leader"))
    else:
        seen = ", ".join(names.get(i, f"{i:x}") for i in sorted(leaders))
        verdicts.append(Verdict("etcd leader", "cluster", "warn", f"members disagree: {seen}"))
    if found.alarms:
        raised = ", ".join(
            f"{a.alarm} on {names.get(a.member_id, a.member_id)}" for a in found.alarms
        )
        verdicts.append(Verdict("etcd alarms", "cluster", "fail", raised))
    else:
        verdicts.append(Verdict("etcd alarms", "cluster", "ok", "none"))
    return verdicts


def _db_size(name: str, size: int, found: HostObservation) -> Verdict:
    quota = (found.probe or {}).get("etcd_quota")
    if not quota:
        return Verdict("etcd db size", name, "ok", f"{_mib(size)} (quota unknown)")
    share = size / quota
    status: Status = "fail" if share >= DB_FAIL else "warn" if share >= DB_WARN else "ok"
    return Verdict("etcd db size", name, status, f"{_mib(size)} of {_mib(quota)} ({share:.0%})")


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _minor(version: str) -> int | None:
    match = re.match(r"^v?1\.(\d+)\.", version or "")
    return int(match[1]) if match else None


def _control_plane_version(hosts: dict[str, HostObservation]) -> str | None:
    """The oldest API server answering /version: kubelets must not be newer than it."""
    versions = []
    for found in hosts.values():
        answer = ((found.probe or {}).get("urls") or {}).get("version") or {}
        if answer.get("status") == 200:
            try:
                versions.append(json.loads(answer["body"])["gitVersion"])
            except (ValueError, KeyError):
                continue
    known = [v for v in versions if _minor(v) is not None]
    return min(known, key=lambda v: _minor(v) or 0) if known else None


def _nodes(
    cluster: Cluster,
    found: ClusterObservation,
    hosts: dict[str, HostObservation],
    removed: frozenset[str],
) -> list[Verdict]:
    if found.error:
        return [Verdict("node", "cluster", "fail", found.error)]
    if found.nodes is None:
        return [Verdict("node", "cluster", "fail", f"no node list: {found.nodes_error}")]
    verdicts: list[Verdict] = []
    server = _control_plane_version(hosts)
    for host in cluster.kube_nodes:
        node = found.nodes.get(host.name)
        if node is None:
            verdicts.append(Verdict("node", host.name, "fail", "no Node object: not joined"))
            continue
        verdicts += _conditions(node.name, node.ready, node.reason, node.conditions)
        verdicts.append(_skew(node.name, node.kubelet_version, server))
    spec = {h.name for h in cluster.kube_nodes}
    for name in sorted(set(found.nodes) - spec):
        detail = (
            "removed with `node remove`, but registered again (the machine came back): run "
            f"`k8sboot node remove {name} --yes` again to wipe it"
            if name in removed
            else "registered but not in the cluster file: stale?"
        )
        verdicts.append(Verdict("node", name, "warn", detail))
    return verdicts


def _conditions(name: str, ready: bool, reason: str, conditions: dict[str, str]) -> list[Verdict]:
    verdicts = [Verdict("node", name, "ok" if ready else "fail", "Ready" if ready else reason)]
    pressing = [c for c in PRESSURE if conditions.get(c) == "True"]
    if pressing:
        verdicts.append(Verdict("node pressure", name, "warn", ", ".join(pressing)))
    else:
        verdicts.append(Verdict("node pressure", name, "ok", "no memory, disk or PID pressure"))
    return verdicts


def _skew(name: str, kubelet: str, server: str | None) -> Verdict:
    if server is None or _minor(kubelet) is None:
        return Verdict("version skew", name, "skip", f"kubelet {kubelet or '?'}, API server ?")
    behind = (_minor(server) or 0) - (_minor(kubelet) or 0)
    detail = f"kubelet {kubelet}, API server {server}"
    if behind < 0:
        return Verdict("version skew", name, "fail", f"{detail}: the kubelet is newer")
    if behind > MAX_KUBELET_BEHIND:
        return Verdict(
            "version skew", name, "fail", f"{detail}: more than {MAX_KUBELET_BEHIND} minors behind"
        )
    return Verdict("version skew", name, "warn" if behind else "ok", detail)
