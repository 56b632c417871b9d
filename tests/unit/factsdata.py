"""Observed state made up for planning tests: facts in, actions out."""

from __future__ import annotations

import copy
import zlib
from pathlib import Path
from typing import Any

from k8sboot.cluster.node_setup import fingerprint, role_vars
from k8sboot.etcd import topology
from k8sboot.etcd.client import EndpointHealth, EndpointStatus, Member, peer_url
from k8sboot.etcd.external import ca_store, issued_record
from k8sboot.etcd.files import bootstrap_file, bootstrap_token, member_files
from k8sboot.etcd.observe import EtcdView
from k8sboot.etcd.tools import EtcdTools
from k8sboot.facts import Facts, HostFacts, NodeStatus, ProbeRequest
from k8sboot.kubeadm_node import ADMIN_CONF, ETCD_MEMBER_DIR, KUBELET_CONF
from k8sboot.render import containerd_files
from k8sboot.runlog import RunLog
from k8sboot.spec import Cluster
from k8sboot.state import StateDir, write_private
from k8sboot.step import Context, sha256
from k8sboot.transport import ReadOnlyHosts, Unreachable
from k8sboot.versions import ETCD, ETCDCTL, ETCDUTL

from .fakes import scripted

STACKED_ETCD = "3.5.21"  # what kubeadm 1.33.1 runs
# A cluster file's hosts with external etcd.
EXTERNAL_HOSTS = [
    {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane"]},
    {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
    {"name": "e1", "address": "10.0.0.31", "roles": ["etcd"]},
    {"name": "e2", "address": "10.0.0.32", "roles": ["etcd"]},
    {"name": "e3", "address": "10.0.0.33", "roles": ["etcd"]},
]


def _mac(name: str) -> str:
    low = zlib.crc32(name.encode()) & 0xFFFF
    return f"02:00:00:00:{low >> 8:02x}:{low & 0xFF:02x}"


class AskedAboutEverything(HostFacts):
    """Facts from a probe asked about every path a step may read: one the test did not
    make exist is missing, as the probe would answer. (The pipeline's own probes are
    asked only what the workflow's steps declare; test_planning_reads_only holds steps
    to that with `answered`.)"""

    def _asked(self, kind: str, path: str) -> Any:
        return self.data[kind].get(path)


def fresh(name: str, ip: str, **changes: Any) -> HostFacts:
    """A freshly installed Debian 12 VM."""
    data: dict[str, Any] = {
        "time": 0.0,
        "hostname": name,
        "os": {"id": "debian", "version_id": "12", "pretty": "Debian GNU/Linux 12 (bookworm)"},
        "arch": "x86_64",
        "kernel": "6.1.0",
        "cpus": 2,
        "memory": {"mem_mib": 4096, "swap_mib": 0, "swap_devices": []},
        "container": None,
        "systemd": True,
        "cgroup2": True,
        "machine_id": f"id-{name}",
        "product_uuid": f"uuid-{name}",
        # From the name's bytes, not hash(): the same on every run, whatever the hash seed.
        "macs": {"eth0": _mac(name)},
        "addresses": [{"interface": "eth1", "address": ip, "prefix": 24, "mac": ""}],
        "ports": [22],
        "files": {},
        "exists": {},
        "manifests": [],
        "images": {},
        "packages": {},
        "services": {},
        "sysctls": {},
        "modules": {"overlay": True, "br_netfilter": True},
        "stamps": {},
        "fstab_swap": [],
        "hosts_blocks": {},
    }
    for key, value in changes.items():
        data[key] = value
    return AskedAboutEverything(name, data)


def converged_host(cluster: Cluster, name: str) -> HostFacts:
    """A host on which `up` has run to the end."""
    host = cluster.host(name)
    found = fresh(name, host.ip)
    data = copy.deepcopy(found.data)
    wanted = role_vars(cluster, host, found)
    data["stamps"] = {role: fingerprint(role, values) for role, values in wanted.items()}
    data["hosts_blocks"] = {cluster.name: [f"{host.ip} {name}"]}
    if host.has("control-plane") or host.has("worker"):
        version = f"{cluster.release}-1.1"
        data["packages"] = {
            "kubeadm": {"version": version, "held": True},
            "kubelet": {"version": version, "held": True},
            "kubectl": {"version": version, "held": True},
            "containerd": {"version": "1.6.20", "held": False},
        }
        data["services"] = {
            "containerd": {"active": "active", "enabled": "enabled"},
            "kubelet": {"active": "active", "enabled": "enabled"},
        }
        data["files"] = {str(f.path): sha256(f.content) for f in containerd_files(cluster)}
        data["exists"] = {KUBELET_CONF: True}
        data["sysctls"] = {"net.ipv4.ip_forward": "1"}
    # etcd's release, linked where k8sboot installs it: on control planes the version of
    # the etcd they talk to (kubeadm's manifest for stacked etcd), on members etcd.version.
    stacked = cluster.etcd.topology == "stacked"
    etcd_version = STACKED_ETCD if stacked else cluster.etcd_version
    tools = [ETCDCTL, ETCDUTL] + ([ETCD] if host.has("etcd") else [])
    if host.has("control-plane") or host.has("etcd"):
        data["links"] = {t: f"/opt/k8sboot/etcd/v{etcd_version}/{t.split('/')[-1]}" for t in tools}
    if host.has("control-plane") and stacked:
        data["images"]["etcd.yaml"] = f"registry.k8s.io/etcd:{STACKED_ETCD}-0"
    if host.has("control-plane"):
        data["exists"][ADMIN_CONF] = True
        data["manifests"] = ["etcd.yaml", "kube-apiserver.yaml"]
        for pod in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            data["images"][f"{pod}.yaml"] = f"registry.k8s.io/{pod}:v{cluster.release}"
        data["files"][ADMIN_CONF] = "admin-hash"
    return AskedAboutEverything(name, data)


def context(
    cluster: Cluster,
    hosts: dict[str, HostFacts],
    tmp: Path,
    nodes: dict[str, NodeStatus] | None = None,
) -> Context:
    """Planning with these facts. Any command a step runs fails the test, naming it,
    unless the test gives ctx.view hosts with the answers."""
    state = StateDir(tmp / "state").ensure()
    return Context(
        cluster,
        state,
        view=ReadOnlyHosts(scripted(h.name for h in cluster.hosts)),  # type: ignore[arg-type]
        log=RunLog(None),  # type: ignore[arg-type]
        facts=Facts(hosts=hosts),
        nodes=nodes or {},
    )


def answered(found: HostFacts, request: ProbeRequest) -> HostFacts:
    """What a probe for exactly `request` answers: the paths it asks about, no others."""
    data = copy.deepcopy(found.data)
    data["files"] = {p: found.data["files"].get(p) for p in request.files}
    data["exists"] = {p: found.data["exists"].get(p, False) for p in request.exists}
    return HostFacts(found.name, data, found.skew)


def ready(*names: str) -> dict[str, NodeStatus]:
    return {n: NodeStatus(n, True, "KubeletReady", "v1.33.1", None, False) for n in names}


def converged_external(cluster: Cluster, tmp_path: Path) -> Context:
    """Every certificate issued and in place, every member running with its files."""
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    ctx = context(cluster, hosts, tmp_path)
    ca = ca_store(ctx.state).load_or_create("test-ca")
    shared = None
    for host in topology.tool_hosts(cluster):
        data = hosts[host.name].data
        data["files"][topology.ca_path_on(host)] = sha256(ca.cert_pem.decode())
        for cert in topology.external_certs(cluster, host):
            if cert.name == "apiserver-etcd-client":
                shared = shared or ca.issue(cert.spec)
                issued = shared
            else:
                issued = ca.issue(cert.spec)
            write_private(issued_record(ctx.state, host.name, cert.name), issued.cert_pem)
            data["files"][cert.cert] = sha256(issued.cert_pem.decode())
            data["files"][cert.key] = "key-hash"
    initial = topology.initial_cluster(cluster.with_role("etcd"))
    for host in cluster.with_role("etcd"):
        data = hosts[host.name].data
        for file in member_files(cluster, host):
            data["files"][str(file.path)] = sha256(file.content)
        boot = bootstrap_file(host, initial, "new", bootstrap_token(cluster))
        data["files"][str(boot.path)] = sha256(boot.content)
        data["exists"][ETCD_MEMBER_DIR] = True
        data["services"]["etcd"] = {"active": "active", "enabled": "enabled"}
    return ctx


def running_context(
    cluster: Cluster, tmp_path: Path, answers: dict[str, object], dead: tuple[str, ...] = ()
) -> Context:
    """A cluster `up` converged, its nodes registered; every host answers `answers`, and
    the `dead` ones cannot be reached (nor are Ready)."""
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts if h.name not in dead}
    nodes = {
        h.name: NodeStatus(
            h.name,
            h.name not in dead,
            "KubeletReady",
            "v1.33.1",
            h.ip,
            False,
            {"node-role.kubernetes.io/control-plane": ""} if h.has("control-plane") else {},
        )
        for h in cluster.hosts
    }
    ctx = context(cluster, hosts, tmp_path, nodes)
    for name in dead:
        ctx.facts.errors[name] = Unreachable(f"{name}: cannot reach it over SSH: No route to host")
    hosts = scripted((h.name for h in cluster.hosts), answers)
    ctx.view = ReadOnlyHosts(hosts)  # type: ignore[arg-type]
    ctx.connections = hosts  # type: ignore[attr-defined]  # to see what was asked
    return ctx


def etcd_view(cluster, leader: int = 1, down: tuple[int, ...] = ()) -> EtcdView:
    """What etcd says of the cluster's members: `leader` leads (by index from 1), the
    `down` ones do not answer."""
    members, statuses, health = [], {}, {}
    for index, host in enumerate(topology.members(cluster), start=1):
        endpoint = topology.endpoint(host)
        members.append(Member(index, host.name, (peer_url(host.ip),), (endpoint,), False))
        if index in down:
            health[endpoint] = EndpointHealth(endpoint, False, "5s", "context deadline exceeded")
            continue
        statuses[index] = EndpointStatus(endpoint, index, leader, "3.4.23", 4096, 4096, 9, 9, 2, ())
        health[endpoint] = EndpointHealth(endpoint, True, "2ms", "")
    runner = topology.members(cluster)[0]
    tools = EtcdTools("3.4.23", None, False)
    return EtcdView(runner, None, tools, members, statuses, health)
