"""Observed state: read-only probes of hosts and of the cluster.

One round trip per host: a small stdlib-only Python program (probes/host.py) runs there
and answers with JSON. Nothing observed is ever written back into the spec.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from k8sboot.errors import MachineError, NoApiAnswer
from k8sboot.host_state import STAMPS_DIR
from k8sboot.kubeadm_node import (
    ADMIN_CONF,
    ETCD_MEMBER_DIR,
    KERNEL_MODULES,
    KUBELET_CONF,
    MANIFESTS_DIR,
    SYSCTLS,
)
from k8sboot.timeouts import API_ANSWER_TIMEOUT
from k8sboot.transport import Askable, CommandFailed, Connection, Transport
from k8sboot.versions import (
    ETCD,
    ETCD_ARCHES,
    ETCD_INSTALL_DIR,
    ETCDCTL,
    ETCDUTL,
    etcd_manifest_version,
)

KUBE_PACKAGES = ("kubeadm", "kubelet", "kubectl")
SERVICES = ("containerd", "kubelet", "etcd")


@dataclass(frozen=True)
class Wanted:
    """What a step needs probed beyond every probe's defaults: the pipeline probes the
    union of its workflow's steps once."""

    files: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    exists: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeRequest:
    files: tuple[str, ...] = ()
    packages: tuple[str, ...] = (*KUBE_PACKAGES, "containerd", "runc")
    services: tuple[str, ...] = SERVICES
    sysctls: tuple[str, ...] = tuple(SYSCTLS)
    modules: tuple[str, ...] = KERNEL_MODULES
    exists: tuple[str, ...] = (ADMIN_CONF, KUBELET_CONF, ETCD_MEMBER_DIR)
    busy: tuple[str, ...] = ("kubeadm", "apt-get", "apt", "dpkg", "unattended-upgr")
    links: tuple[str, ...] = (ETCD, ETCDCTL, ETCDUTL)

    def script(self) -> bytes:
        args = {
            "files": list(self.files),
            "packages": list(self.packages),
            "services": list(self.services),
            "sysctls": list(self.sysctls),
            "modules": list(self.modules),
            "exists": list(self.exists),
            "busy": list(self.busy),
            "links": list(self.links),
            "manifests_dir": MANIFESTS_DIR,
            "stamps_dir": STAMPS_DIR,
        }
        body = resources.files("k8sboot.probes").joinpath("host.py").read_text()
        return f"ARGS = {json.dumps(args)}\n{body}".encode()

    @classmethod
    def for_(cls, wanted: Iterable[Wanted]) -> ProbeRequest:
        base = cls()
        wanted = list(wanted)

        def union(defaults: tuple[str, ...], field_name: str) -> tuple[str, ...]:
            return tuple(
                dict.fromkeys([*defaults, *(p for w in wanted for p in getattr(w, field_name))])
            )

        return cls(
            files=union(base.files, "files"),
            packages=union(base.packages, "packages"),
            exists=union(base.exists, "exists"),
        )


@dataclass(frozen=True)
class Package:
    version: str
    held: bool


@dataclass(frozen=True)
class OsRelease:
    id: str
    version_id: str
    pretty: str


@dataclass(frozen=True)
class ServiceState:
    """A systemd unit as the probe saw it: ActiveState, UnitFileState, and when its main
    process started (seconds since the epoch, on this host's clock), None when it has not."""

    active: str
    enabled: str
    since: float | None = None


@dataclass(frozen=True)
class HostFacts:
    name: str
    data: dict[str, Any]
    skew: float = 0.0  # seconds this host's clock is ahead of the operator's

    @property
    def container(self) -> str | None:
        """The container technology (lxc, systemd-nspawn, docker...) or None on a VM/metal."""
        return self.data.get("container")

    def file_hash(self, path: str) -> str | None:
        """The file's sha256 (None when it is missing). A path nobody asked to probe is
        a step that forgot to declare it (Step.wants), not a missing file."""
        return self._asked("files", path)

    def exists(self, path: str) -> bool:
        return bool(self._asked("exists", path))

    def _asked(self, kind: str, path: str) -> Any:
        found = self.data[kind]
        if path not in found:
            raise KeyError(f"{path} was not probed ({kind}): declare it in the step's wants()")
        return found[path]

    @property
    def manifests(self) -> list[str]:
        """The static pod manifests kubeadm left in /etc/kubernetes/manifests."""
        return list(self.data["manifests"])

    @property
    def os(self) -> OsRelease:
        found = self.data["os"]
        return OsRelease(found["id"], found["version_id"], found["pretty"])

    @property
    def cpus(self) -> int:
        return int(self.data["cpus"])

    @property
    def mem_mib(self) -> int:
        return int(self.data["memory"]["mem_mib"])

    @property
    def systemd(self) -> bool:
        """systemd is the init system that runs."""
        return bool(self.data.get("systemd"))

    @property
    def swap_mib(self) -> int:
        return int(self.data["memory"]["swap_mib"])

    @property
    def ports(self) -> list[int]:
        """The TCP ports something listens on."""
        return list(self.data["ports"])

    @property
    def machine(self) -> str:
        """The machine's architecture as `uname -m` names it."""
        return str(self.data.get("arch", ""))

    @property
    def modules(self) -> dict[str, bool]:
        """Whether each kernel module k8sboot needs is loaded."""
        return dict(self.data["modules"])

    @property
    def identity(self) -> dict[str, list[str]]:
        """What must differ between the hosts of a cluster, as kubeadm's preflight checks
        it: host name, MAC addresses, product_uuid, machine-id (the last two when known)."""
        data = self.data
        return {
            "hostnames": [data["hostname"]],
            "MAC addresses": list(data["macs"].values()),
            "product_uuid": [data["product_uuid"]] if data["product_uuid"] else [],
            "machine-id": [data["machine_id"]] if data["machine_id"] else [],
        }

    def package(self, name: str) -> Package | None:
        found = self.data["packages"].get(name)
        return Package(found["version"], found["held"]) if found else None

    def service(self, name: str) -> ServiceState:
        found = self.data["services"].get(name, {})
        return ServiceState(
            found.get("active", "unknown"), found.get("enabled", "unknown"), found.get("since")
        )

    def started_before(self, service: str, path: str) -> bool:
        """The running service started before `path` last changed: it has not read it."""
        since = self.service(service).since
        changed = self.data.get("mtimes", {}).get(path)
        return (
            self.active(service) and since is not None and changed is not None and since < changed
        )

    def active(self, service: str) -> bool:
        return self.service(service).active == "active"

    def enabled(self, service: str) -> bool:
        return self.service(service).enabled in ("enabled", "enabled-runtime", "static")

    def etcd_linked(self, path: str) -> str | None:
        """The etcd release version that `path` (a k8sboot link) points into, if any."""
        target = self.data.get("links", {}).get(path) or ""
        prefix = f"{ETCD_INSTALL_DIR}/v"
        if not target.startswith(prefix):
            return None
        return target[len(prefix) :].split("/")[0] or None

    def static_pod_version(self, manifest: str) -> str | None:
        """The version a static pod runs here, its image's tag ('1.33.1' of
        registry.k8s.io/kube-apiserver:v1.33.1), None without that manifest."""
        image = self.data.get("images", {}).get(manifest) or ""
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        return tag.removeprefix("v").split("-")[0] or None

    @property
    def control_plane_version(self) -> str | None:
        """The Kubernetes version kubeadm's kube-apiserver runs here."""
        return self.static_pod_version("kube-apiserver.yaml")

    @property
    def etcd_manifest_version(self) -> str | None:
        """The etcd version kubeadm's etcd static pod runs here (its image tag)."""
        image = self.data.get("images", {}).get("etcd.yaml") or ""
        return etcd_manifest_version(f"image: {image}") if image else None

    @property
    def arch(self) -> str | None:
        return ETCD_ARCHES.get(self.machine)

    def sysctl(self, name: str) -> str | None:
        return self.data["sysctls"].get(name)

    @property
    def fstab_swap(self) -> list[str]:
        """The swap entries /etc/fstab mounts at boot."""
        return list(self.data.get("fstab_swap", []))

    def hosts_block(self, cluster_name: str) -> list[str] | None:
        """The lines of the prepare role's block for this cluster in /etc/hosts (words
        single-spaced), None when there is none."""
        return self.data.get("hosts_blocks", {}).get(cluster_name)

    def stamp(self, role: str) -> str | None:
        """The fingerprint a converged role recorded (the stamp's first line)."""
        recorded = self.data["stamps"].get(role)
        return recorded.split("\n", 1)[0] if recorded is not None else None

    def stamped_files(self, role: str) -> dict[str, str]:
        """The files the role wrote, with their hashes then (`sha256sum` lines after the
        fingerprint)."""
        lines = (self.data["stamps"].get(role) or "").splitlines()[1:]
        return {path: digest for digest, _, path in (line.partition("  ") for line in lines)}

    def stamps_read_again(self, texts: dict[str, str]) -> None:
        """Stamps read back from the host right after they were written (each role's
        text as the probe reads it): what later steps plan from, without a probe."""
        self.data["stamps"].update(texts)

    def interface_of(self, address: str) -> str | None:
        return next(
            (a["interface"] for a in self.data["addresses"] if a["address"] == address), None
        )

    @property
    def busy(self) -> list[str]:
        """Package or kubeadm processes still running (from another or an interrupted run)."""
        return list(self.data.get("busy", []))

    @property
    def kubeadm_configured(self) -> bool:
        """kubeadm init or join has run here (it leaves kubelet.conf behind)."""
        return self.exists(KUBELET_CONF)

    @property
    def initialised_control_plane(self) -> bool:
        return self.exists(ADMIN_CONF) and "kube-apiserver.yaml" in self.manifests


@dataclass
class Facts:
    """What the probes found, by host; hosts that could not be probed keep their error."""

    hosts: dict[str, HostFacts] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    def __getitem__(self, name: str) -> HostFacts:
        if name in self.errors:
            raise self.errors[name]
        return self.hosts[name]


def probe_host(connection: Connection, request: ProbeRequest) -> HostFacts:
    sent = time.time()
    result = connection.run("python3 -", stdin=request.script(), timeout=120, shown="probe")
    received = time.time()
    try:
        data = json.loads(result.stdout)
    except ValueError:
        raise MachineError(f"{connection.name}: the probe answered no JSON") from None
    # The host read its clock somewhere between sending and receiving.
    skew = data["time"] - (sent + received) / 2
    return HostFacts(connection.name, data, skew)


def probe(transport: Transport, names: list[str], request: ProbeRequest) -> Facts:
    facts = Facts()
    for name, outcome in transport.each(names, lambda c: probe_host(c, request)).items():
        if isinstance(outcome, BaseException):
            facts.errors[name] = outcome
        else:
            facts.hosts[name] = outcome
    return facts


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ready: bool
    reason: str  # of the Ready condition, when not ready
    kubelet_version: str
    internal_ip: str | None
    unschedulable: bool
    labels: dict[str, str] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)  # type -> "True"/"False"/"Unknown"


# admin.conf reaches the API through the cluster's endpoint; a request that never gets an
# answer (a virtual IP moving between control planes) fails after 30 s instead of hanging.
KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF} --request-timeout=30s"


def parse_nodes(document: dict[str, Any]) -> dict[str, NodeStatus]:
    nodes = {}
    for item in document.get("items", []):
        status = item.get("status", {})
        ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
        internal = next(
            (a["address"] for a in status.get("addresses", []) if a.get("type") == "InternalIP"),
            None,
        )
        name = item["metadata"]["name"]
        nodes[name] = NodeStatus(
            name=name,
            ready=ready.get("status") == "True",
            reason=ready.get("reason") or ready.get("message") or "no Ready condition",
            kubelet_version=status.get("nodeInfo", {}).get("kubeletVersion", ""),
            internal_ip=internal,
            unschedulable=bool(item.get("spec", {}).get("unschedulable")),
            labels=item["metadata"].get("labels", {}),
            conditions={
                c["type"]: c.get("status", "Unknown")
                for c in status.get("conditions", [])
                if "type" in c
            },
        )
    return nodes


SEPARATOR = "--- k8sboot ---"
# What kubectl says when the API server cannot answer (down, or its etcd is): the rest
# (Unauthorized, a broken admin.conf) are faults of their own, reported as they are.
NO_ANSWER = (
    "etcd",
    "unable to connect",
    "refused",
    "timeout",
    "timed out",
    "deadline exceeded",
    "unable to return a response",
    "unable to handle the request",
    "serviceunavailable",
    "no route to host",
    "eof",
)
RESTORE_HINT = (
    "if etcd is lost, restore it (`k8sboot etcd restore`, README: Restoring after losing "
    "etcd); `k8sboot etcd health` shows what etcd says"
)


@dataclass(frozen=True)
class ApiAnswer:
    """Whether the Kubernetes API answered when the run asked it, and if not, why."""

    host: str = ""  # the control plane it was asked through; "" when it was not asked
    answers: bool = True
    reason: str = ""

    def needed(self, what: str) -> NoApiAnswer:
        """The one line a step that cannot do without the API fails with."""
        return NoApiAnswer(
            f"{what}: the API on {self.host} does not answer ({self.reason}): {RESTORE_HINT}"
        )


@dataclass(frozen=True)
class ClusterView:
    nodes: dict[str, NodeStatus]
    # kubeadm init creates kube-public/cluster-info in its bootstrap-token phase, late,
    # after kubeadm-config; every join reads it. A control plane that answers without it
    # is an init that stopped half-way.
    init_finished: bool
    api: ApiAnswer = ApiAnswer()


def _no_answer(connection: Askable, reason: str) -> ClusterView:
    # Whether init finished is unknown: taken as finished, because an init planned over a
    # cluster whose API is merely down would reset the control plane and its data.
    return ClusterView({}, True, ApiAnswer(connection.name, False, reason))


def probe_cluster(connection: Askable, wait: int = API_ANSWER_TIMEOUT) -> ClusterView:
    """The Nodes, and whether kubeadm init got as far as joins need, in one round trip.
    An API that does not answer within `wait` seconds is part of the view, not an error."""
    shown = "kubectl get nodes, configmap cluster-info"
    timeout = f" --request-timeout={wait}s"  # the last one counts
    try:
        result = connection.ask(
            f"{KUBECTL} get nodes -o json{timeout} && echo '{SEPARATOR}' && "
            f"{KUBECTL} -n kube-public get configmap cluster-info -o name --ignore-not-found"
            f"{timeout}",
            timeout=4 * wait,
            shown=shown,
            check=False,
        )
    except MachineError as error:  # the command itself got no answer in time
        return _no_answer(connection, str(error))
    if result.exit_code != 0 and "(Forbidden)" in result.stderr:
        # admin.conf's group (kubeadm:cluster-admins, 1.29+) is bound to cluster-admin by
        # init itself once the control plane answers: init stopped before that.
        return ClusterView({}, init_finished=False)
    if result.exit_code != 0:
        said = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = said[-1][-200:] if said else f"kubectl exit {result.exit_code}"
        if any(marker in result.stderr.lower() for marker in NO_ANSWER):
            return _no_answer(connection, reason)
        raise CommandFailed(result, None, shown)
    nodes, _, cluster_info = result.stdout.partition(SEPARATOR)
    try:
        parsed = parse_nodes(json.loads(nodes))
    except (ValueError, KeyError) as exc:
        raise MachineError(f"{connection.name}: unreadable node list ({exc})") from None
    return ClusterView(parsed, init_finished=bool(cluster_info.strip()))


def probe_nodes(connection: Askable, wait: int | None = None) -> dict[str, NodeStatus]:
    """The Nodes the API knows, asked through a control plane's admin.conf; `wait` seconds
    instead of KUBECTL's where the Nodes are a detail (an API whose etcd is down answers
    nothing until the request times out)."""
    shorter = f" --request-timeout={wait}s" if wait else ""  # the last one counts
    result = connection.ask(
        f"{KUBECTL} get nodes -o json{shorter}", timeout=60, shown="kubectl get nodes"
    )
    try:
        return parse_nodes(json.loads(result.stdout))
    except (ValueError, KeyError) as exc:
        raise MachineError(f"{connection.name}: unreadable node list ({exc})") from None
