"""`certs renew`: kubeadm's certificates renewed on each control plane in turn, its
static pods restarted one at a time."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from k8sboot.actions import Action, OnHost
from k8sboot.cluster.kubeconfig import FetchKubeconfig
from k8sboot.errors import MachineError
from k8sboot.etcd.client import STACKED_TLS, EtcdCtl, client_url
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import ProbeRequest, probe_host
from k8sboot.host_state import PAUSED_MANIFESTS_DIR
from k8sboot.kubeadm_node import ADMIN_CONF, API_SERVER_PORT, MANIFESTS_DIR
from k8sboot.nodes.observe import api_server, kubectl
from k8sboot.step import Context, Step
from k8sboot.transport import Connection


class RenewAll(Step):
    title = "renew certificates"

    def plan(self, ctx: Context) -> list[Action]:
        renewing, unreachable = [], []
        for host in ctx.cluster.control_planes:
            if host.name not in ctx.facts.hosts:
                unreachable.append(host.name)
            elif ctx.facts[host.name].exists(ADMIN_CONF):
                renewing.append(host.name)
        if not renewing:
            raise MachineError("no reachable, initialised control plane to renew certificates on")
        for name in unreachable:
            ctx.notes.append(
                f"warning: {name} could not be reached: its certificates were not renewed; "
                "run `k8sboot certs renew` again once it is back"
            )
        actions: list[Action] = [RenewCertificates(name) for name in renewing]
        return [*actions, FetchKubeconfig(renewing[0], ctx.cluster.endpoint)]


@dataclass(frozen=True)
class RenewCertificates(OnHost):
    """`kubeadm certs renew all` on one control plane, then its static pods restarted and
    its API server and etcd member found healthy before anything else happens."""

    def describe(self) -> str:
        return (
            "kubeadm certs renew all; restart the API server, controller-manager, scheduler "
            "and etcd (their manifests moved out and back); wait until healthy"
        )


# Each static pod kubeadm makes, and the port it listens on while it runs.
STATIC_PODS = {
    "kube-apiserver": API_SERVER_PORT,
    "kube-controller-manager": 10257,
    "kube-scheduler": 10259,
    "etcd": 2379,
}


STOP_TIMEOUT = 120


START_TIMEOUT = 300


PORTS_ONLY = ProbeRequest(packages=(), services=(), sysctls=(), modules=(), exists=(), busy=())


@handles(RenewCertificates)
def renew(executor: Executor, action: RenewCertificates) -> Outcome:
    ctx = executor.ctx
    host = ctx.cluster.host(action.host)
    assert host is not None
    connection = executor.transport[action.host]
    _restore_paused(connection)  # an earlier run interrupted while they were out
    etcd = EtcdCtl(connection, STACKED_TLS, [client_url(host.ip)])
    stacked = _present(connection, ["etcd"]) == ["etcd"]
    if stacked:
        _require_healthy_etcd(etcd, action.host)
    executor.progress(action.host, "kubeadm certs renew all")
    connection.run("kubeadm certs renew all", timeout=300)
    pods = _present(connection, list(STATIC_PODS))
    files = " ".join(shlex.quote(f"{MANIFESTS_DIR}/{p}.yaml") for p in pods)
    executor.progress(action.host, f"stop {', '.join(pods)}")
    connection.run(f"mkdir -p {PAUSED_MANIFESTS_DIR} && mv -f {files} {PAUSED_MANIFESTS_DIR}/")
    try:
        _wait_ports(executor, connection, [STATIC_PODS[p] for p in pods])
    finally:
        executor.progress(action.host, f"start {', '.join(pods)}")
        _restore_paused(connection)
    _wait_healthy(executor, connection, api_server(host.ip), etcd if stacked else None)
    return Outcome((action.host,))


def _present(connection: Connection, pods: list[str]) -> list[str]:
    listing = connection.run(f"ls {MANIFESTS_DIR}", check=False).stdout.split()
    return [p for p in pods if f"{p}.yaml" in listing]


def _restore_paused(connection: Connection) -> None:
    connection.run(
        f"if [ -d {PAUSED_MANIFESTS_DIR} ]; then for f in {PAUSED_MANIFESTS_DIR}/*.yaml; do "
        f'[ -e "$f" ] && mv -f "$f" {MANIFESTS_DIR}/; done; rmdir {PAUSED_MANIFESTS_DIR}; fi; true'
    )


def _require_healthy_etcd(etcd: EtcdCtl, host: str) -> None:
    members = etcd.members()
    urls = [m.client_urls[0] for m in members if m.client_urls]
    sick = [h.endpoint for h in etcd.health(urls) if not h.healthy]
    if sick or len(urls) < len(members):
        raise MachineError(
            f"etcd is not healthy ({', '.join(sick) or 'a member has not started'}); renewing "
            f"{host}'s certificates restarts its etcd member: make etcd healthy first"
        )


def _wait_ports(executor: Executor, connection: Connection, ports: list[int]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        listening = set(probe_host(connection, PORTS_ONLY).ports) & set(ports)
        if not listening:
            return
        if time.monotonic() > deadline:
            raise MachineError(
                f"{connection.name}: static pods still listening on "
                f"{', '.join(map(str, sorted(listening)))} {STOP_TIMEOUT}s after their "
                "manifests were moved out"
            )
        executor.progress(connection.name, "waiting for the static pods to stop")
        time.sleep(1)


def _wait_healthy(
    executor: Executor, connection: Connection, server: str, etcd: EtcdCtl | None
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    said = None
    while True:
        problems = []
        if etcd is not None:
            problems += [
                f"etcd: {h.error or 'unhealthy'}"
                for h in etcd.health(etcd.endpoints, polled=True)
                if not h.healthy
            ]
        ready = connection.run(
            f"{kubectl(server)} get --raw /readyz",
            check=False,
            timeout=30,
            shown="readyz",
            quiet=True,
        )
        if not ready.ok:
            tail = (ready.stderr or ready.stdout).strip().splitlines()[-1:] or ["no answer"]
            problems.append(f"API server: {tail[0]}")
        # A poll every 2 s for minutes: the log gets what changed.
        if problems != said:
            executor.ctx.log.write(
                connection.name, f"healthy after the restart? {'; '.join(problems) or 'yes'}"
            )
            said = problems
        if not problems:
            return
        if time.monotonic() > deadline:
            raise MachineError(
                f"{connection.name}: not healthy {START_TIMEOUT}s after the restart: "
                + "; ".join(problems)
            )
        executor.progress(connection.name, f"waiting: {'; '.join(problems)}")
        time.sleep(2)
