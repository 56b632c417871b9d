"""What `k8sboot health` looks at, gathered over SSH: per host, one probe round trip (and
a clock reading, and on control planes kubeadm's certificate list); for the cluster, the
Nodes and etcd's members, health, status and alarms through one control plane.

Read-only. Every independent question runs at the same time (`parallel=True`); the same
questions one after another are what the benchmark compares it with.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

from k8sboot.certs.expiry import Certificate, check_expiration
from k8sboot.etcd.client import (
    STACKED_TLS,
    Alarm,
    EndpointHealth,
    EndpointStatus,
    EtcdCtl,
    Member,
    client_url,
)
from k8sboot.facts import NodeStatus, probe_nodes
from k8sboot.kubeadm_node import ADMIN_CONF, CA_CERT, ETCD_MANIFEST
from k8sboot.nodes.observe import api_server
from k8sboot.spec import Cluster, Host
from k8sboot.transport import HostKeyChanged, ReadOnlyHost, ReadOnlyHosts

SERVICES = ("containerd", "kubelet")

T = TypeVar("T")


@dataclass
class HostObservation:
    name: str
    error: str | None = None  # no SSH session
    host_key_changed: bool = False
    probe: dict[str, Any] | None = None  # what probes/health.py answered
    probe_error: str | None = None
    clock_offset: float | None = None  # seconds ahead of this machine's clock
    clock_error: float = 0.0  # +- this much (half the round trip)
    certificates: list[Certificate] | None = None
    certificates_error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None


@dataclass
class ClusterObservation:
    error: str | None = None  # no control plane could be asked
    nodes: dict[str, NodeStatus] | None = None
    nodes_error: str | None = None
    members: list[Member] | None = None
    etcd_health: list[EndpointHealth] = field(default_factory=list)
    etcd_status: list[EndpointStatus] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    etcd_error: str | None = None


@dataclass
class Observations:
    hosts: dict[str, HostObservation]
    cluster: ClusterObservation
    now: datetime
    seconds: float = 0.0


Tasks = dict[str, Callable[[], Any]]


def run_parallel(tasks: Tasks) -> dict[str, Any]:
    """Every task at once; each result, or the exception it raised."""
    if not tasks:
        return {}
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = {key: pool.submit(task) for key, task in tasks.items()}
        return {key: _outcome(future.result) for key, future in futures.items()}


def run_sequential(tasks: Tasks) -> dict[str, Any]:
    return {key: _outcome(task) for key, task in tasks.items()}


def _outcome(call: Callable[[], T]) -> T | Exception:
    try:
        return call()
    except Exception as error:  # reported as that question's answer
        return error


def _error(value: Any) -> str | None:
    # Some exceptions say nothing (an EOFError from a dropped SSH channel): still an error.
    return (str(value) or type(value).__name__) if isinstance(value, Exception) else None


def probe_script(args: dict[str, Any]) -> bytes:
    body = resources.files("k8sboot.probes").joinpath("health.py").read_text()
    return f"ARGS = {json.dumps(args)}\n{body}".encode()


def _probe_args(cluster: Cluster, host: Host) -> dict[str, Any]:
    args: dict[str, Any] = {"services": [], "urls": {}, "cafile": CA_CERT}
    if host.has("control-plane") or host.has("worker"):
        args["services"] = list(SERVICES)
        args["urls"]["endpoint"] = f"https://{cluster.endpoint}/readyz"
    if host.has("control-plane"):
        local = api_server(host.ip)
        args["urls"]["readyz"] = f"{local}/readyz"
        args["urls"]["version"] = f"{local}/version"
        if cluster.etcd.topology == "stacked":
            args["etcd_manifest"] = ETCD_MANIFEST
    return args


class Reach:
    """Connections for one health run: one attempt per host (health reports an unreachable
    host, it does not insist), and a failure remembered, so that no second question waits
    for the same timeout again."""

    def __init__(self, hosts: ReadOnlyHosts):
        self.hosts = hosts
        self._locks = {name: threading.Lock() for name in hosts.names}
        self._errors: dict[str, Exception] = {}

    def __call__(self, name: str) -> ReadOnlyHost:
        with self._locks[name]:
            if name in self._errors:
                raise self._errors[name]
            try:
                return self.hosts[name].open(attempts=1)
            except Exception as error:
                self._errors[name] = error
                raise


def _clock(connection: ReadOnlyHost) -> tuple[float, float]:
    sent = time.time()
    result = connection.ask("date +%s.%N", timeout=10, shown="clock")
    received = time.time()
    return float(result.stdout.strip()) - (sent + received) / 2, (received - sent) / 2


def observe_host(
    cluster: Cluster, reach: Reach, host: Host, run: Callable[[Tasks], dict[str, Any]]
) -> HostObservation:
    seen = HostObservation(host.name)
    try:
        connection = reach(host.name)
    except HostKeyChanged as error:
        seen.error, seen.host_key_changed = str(error), True
        return seen
    except Exception as error:
        seen.error = str(error)
        return seen
    script = probe_script(_probe_args(cluster, host))
    tasks: Tasks = {
        "probe": lambda: json.loads(
            connection.ask("python3 -", stdin=script, timeout=60, shown="health probe").stdout
        ),
        "clock": lambda: _clock(connection),
    }
    if host.has("control-plane"):
        tasks["certificates"] = lambda: check_expiration(connection)
    answers = run(tasks)
    probe = answers["probe"]
    seen.probe, seen.probe_error = (None, str(probe)) if _error(probe) else (probe, None)
    if not _error(answers["clock"]):
        seen.clock_offset, seen.clock_error = answers["clock"]
    if "certificates" in answers:
        certificates = answers["certificates"]
        if _error(certificates):
            seen.certificates_error = str(certificates)
        else:
            seen.certificates = certificates
    return seen


def observe_cluster(
    cluster: Cluster, reach: Reach, run: Callable[[Tasks], dict[str, Any]]
) -> ClusterObservation:
    """Through the first control plane that answers and has admin.conf."""
    seen = ClusterObservation()
    problems = []
    for host in cluster.control_planes:
        try:
            connection = reach(host.name)
            connection.ask(f"test -e {ADMIN_CONF}", timeout=10, shown="admin.conf?")
        except Exception as error:
            problems.append(f"{host.name}: {error}")
            continue
        break
    else:
        seen.error = "no control plane to ask: " + "; ".join(problems)
        return seen
    tasks: Tasks = {"nodes": lambda: probe_nodes(connection)}
    if cluster.etcd.topology == "stacked":
        endpoints = [client_url(h.ip) for h in cluster.etcd_members]
        etcd = EtcdCtl(connection, STACKED_TLS, endpoints)
        tasks |= {
            "members": etcd.members,
            "health": lambda: etcd.health(endpoints),
            "status": lambda: etcd.status(endpoints),
            "alarms": etcd.alarms,
        }
    answers = run(tasks)
    nodes = answers["nodes"]
    seen.nodes, seen.nodes_error = (None, str(nodes)) if _error(nodes) else (nodes, None)
    if "members" in answers:
        errors = [_error(answers[k]) for k in ("members", "health", "status", "alarms")]
        seen.etcd_error = next((e for e in errors if e), None)
        if not _error(answers["members"]):
            seen.members = answers["members"]
        for key, attribute in (("health", "etcd_health"), ("status", "etcd_status")):
            if not _error(answers[key]):
                setattr(seen, attribute, answers[key])
        if not _error(answers["alarms"]):
            seen.alarms = answers["alarms"]
    return seen


def observe(cluster: Cluster, hosts: ReadOnlyHosts, parallel: bool = True) -> Observations:
    run = run_parallel if parallel else run_sequential
    reach = Reach(hosts)
    started = time.monotonic()
    tasks: Tasks = {
        f"host:{h.name}": (lambda h=h: observe_host(cluster, reach, h, run)) for h in cluster.hosts
    }
    tasks["cluster"] = lambda: observe_cluster(cluster, reach, run)
    answers = run(tasks)
    hosts = {}
    for host in cluster.hosts:
        answer = answers[f"host:{host.name}"]
        hosts[host.name] = (
            HostObservation(host.name, error=str(answer)) if _error(answer) else answer
        )
    found = answers["cluster"]
    if _error(found):
        found = ClusterObservation(error=str(found))
    return Observations(hosts, found, datetime.now(UTC), time.monotonic() - started)
