"""External etcd: certificates, starting members, adding members, rolling restarts.

Importing this module also registers the handlers of the etcd commands (snapshots, the
catalogue, maintenance, restores), which live beside it.
"""

from __future__ import annotations

import time

from k8sboot.errors import MachineError
from k8sboot.etcd import topology
from k8sboot.etcd.actions import (
    AddEtcdMember,
    BootstrapEtcd,
    ConfigureEtcd,
    IssueEtcdCerts,
    PrepareRestoreTarget,
)
from k8sboot.etcd.client import EtcdCtl, member_by_peer_url, peer_url
from k8sboot.etcd.files import bootstrap_file, bootstrap_token
from k8sboot.etcd.pki import CA, Issued, satisfies
from k8sboot.executor.core import Executor, Outcome, handles, raise_first
from k8sboot.kubeadm_node import ETCD_DATA_DIR, ETCD_PKI_DIR, KUBERNETES_DIR, PKI_DIR
from k8sboot.render import RenderedFile
from k8sboot.spec import Host
from k8sboot.state import write_private
from k8sboot.steps.etcd_external import SHARED, ca_store, issued_record
from k8sboot.transport import Connection

HEALTH_TIMEOUT = 300.0
START_TIMEOUT = 330.0
KUBE_DIRS = f"install -d -m 755 {KUBERNETES_DIR} {PKI_DIR} {ETCD_PKI_DIR}"
ETCD_DIRS = (
    "install -d -m 755 /etc/etcd && install -d -m 750 -g etcd /etc/etcd/pki "
    f"&& install -d -m 700 -o etcd -g etcd {ETCD_DATA_DIR}"
)


@handles(IssueEtcdCerts)
def issue_certs(executor: Executor, action: IssueEtcdCerts) -> Outcome:
    ctx = executor.ctx
    host = _host(executor, action.host)
    connection = executor.transport[host.name]
    ca = ca_store(ctx.state).load_or_create(f"k8sboot-{ctx.cluster.name}-etcd-ca")
    connection.run(ETCD_DIRS if host.has("etcd") else KUBE_DIRS, timeout=60)
    if host.has("etcd") and host.has("control-plane"):
        connection.run(KUBE_DIRS, timeout=60)
    if action.ca:
        executor.progress(host.name, "write the etcd CA certificate")
        connection.write_file(topology.ca_path_on(host), ca.cert_pem, 0o644)
        if host.has("etcd") and host.has("control-plane"):
            connection.write_file(topology.APISERVER_CLIENT_TLS.cacert, ca.cert_pem, 0o644)
    for cert in topology.external_certs(ctx.cluster, host):
        if cert.name not in action.certs:
            continue
        executor.progress(host.name, f"issue the {cert.name} certificate")
        issued = _shared(executor, ca, cert) if cert.name == SHARED else ca.issue(cert.spec)
        # The key first: a certificate on the host always has its key beside it.
        connection.write_file(cert.key, issued.key_pem, 0o600)
        connection.write_file(cert.cert, issued.cert_pem, 0o644)
        write_private(issued_record(ctx.state, host.name, cert.name), issued.cert_pem)
    if host.has("etcd"):
        # etcd runs as the etcd user: it reads its keys through the group.
        connection.run(
            f"chgrp etcd {topology.EXTERNAL_PKI}/*.key && chmod 640 {topology.EXTERNAL_PKI}/*.key",
            timeout=60,
        )
    if action.restart_etcd:
        executor.progress(host.name, "restart etcd")
        connection.run("systemctl restart etcd", timeout=START_TIMEOUT)
        wait_healthy(executor)
    return Outcome((host.name,))


def _shared(executor: Executor, ca: CA, cert: topology.CertFile) -> Issued:
    """The API server's client certificate is one for every control plane (kubeadm copies
    it to joining control planes): reuse the current one from a control plane that has it,
    else issue a new one."""
    ctx = executor.ctx
    record = issued_record(ctx.state, "", SHARED)
    if record.exists() and satisfies(record.read_bytes(), cert.spec, ca.cert_pem) is None:
        for host in ctx.cluster.control_planes:
            if host.name not in ctx.facts.hosts:
                continue
            connection = executor.transport[host.name]
            if connection.read_file(cert.cert) == record.read_bytes():
                key = connection.read_file(cert.key, secret=True)
                if key:
                    return Issued(record.read_bytes(), key)
    return ca.issue(cert.spec)


def _host(executor: Executor, name: str) -> Host:
    host = executor.ctx.cluster.host(name)
    assert host is not None
    return host


def _write(connection: Connection, files: tuple[RenderedFile, ...]) -> None:
    for file in files:
        connection.write_file(str(file.path), file.content.encode(), file.mode)


@handles(BootstrapEtcd)
def bootstrap(executor: Executor, action: BootstrapEtcd) -> Outcome:
    """Every member starts at once: each waits for a quorum before it reports ready."""
    files = dict(action.files)

    def start(connection: Connection) -> None:
        executor.progress(connection.name, "configure etcd")
        connection.run(ETCD_DIRS, timeout=60)
        _write(connection, files[connection.name])
        executor.progress(connection.name, "start etcd (waits for the other members)")
        connection.run(
            "systemctl daemon-reload && systemctl enable etcd && systemctl restart etcd",
            timeout=START_TIMEOUT,
        )

    raise_first(executor.transport.each(action.members, start))
    wait_healthy(executor)
    return Outcome(action.members)


@handles(AddEtcdMember)
def add_member(executor: Executor, action: AddEtcdMember) -> Outcome:
    ctx = executor.ctx
    host = _host(executor, action.host)
    via = _host(executor, action.via)
    ctl = EtcdCtl(
        executor.transport[via.name], topology.tls_on(ctx.cluster, via), [topology.endpoint(via)]
    )
    members = ctl.members()
    if member_by_peer_url(members, host.ip) is None:  # not added by an earlier, cut-off run
        executor.progress(via.name, f"etcdctl member add {host.name}")
        members = ctl.member_add(host.name, peer_url(host.ip))
    initial = ",".join(f"{m.name or host.name}={m.peer_urls[0]}" for m in members if m.peer_urls)
    connection = executor.transport[host.name]
    connection.run(ETCD_DIRS, timeout=60)
    token = bootstrap_token(ctx.cluster)
    _write(connection, (*action.files, bootstrap_file(host, initial, "existing", token)))
    executor.progress(host.name, "start etcd")
    connection.run(
        "systemctl daemon-reload && systemctl enable etcd && systemctl restart etcd",
        timeout=START_TIMEOUT,
    )
    wait_healthy(executor)
    return Outcome((host.name,))


@handles(ConfigureEtcd)
def configure(executor: Executor, action: ConfigureEtcd) -> Outcome:
    connection = executor.transport[action.host]
    connection.run(ETCD_DIRS, timeout=60)
    _write(connection, action.files)
    verb = "restart" if action.restart else "start"
    executor.progress(action.host, f"{verb} etcd")
    connection.run(
        f"systemctl daemon-reload && systemctl enable etcd && systemctl {verb} etcd",
        timeout=START_TIMEOUT,
    )
    wait_healthy(executor)
    return Outcome((action.host,))


@handles(PrepareRestoreTarget)
def prepare_restore_target(executor: Executor, action: PrepareRestoreTarget) -> Outcome:
    connection = executor.transport[action.host]
    connection.run(ETCD_DIRS, timeout=60)
    _write(connection, action.files)
    # Known to systemd, so that the restore can start it; not enabled, so that a reboot
    # before the restore cannot start an empty member.
    connection.run("systemctl daemon-reload", timeout=60)
    return Outcome((action.host,))


def wait_healthy(
    executor: Executor, hosts: list[Host] | None = None, timeout: float = HEALTH_TIMEOUT
) -> None:
    """Until every member's endpoint answers health checks, asked from a member host (or,
    for stacked etcd, a control plane)."""
    ctx = executor.ctx
    hosts = hosts or topology.members(ctx.cluster)
    runner = next(h for h in topology.tool_hosts(ctx.cluster) if h.name in ctx.facts.hosts)
    endpoints = [topology.endpoint(h) for h in hosts]
    ctl = EtcdCtl(executor.transport[runner.name], topology.tls_on(ctx.cluster, runner), endpoints)
    deadline = time.monotonic() + timeout
    while True:
        health = ctl.health(endpoints)  # a member still starting: ask again
        sick = [h.endpoint + (f" ({h.error})" if h.error else "") for h in health if not h.healthy]
        if health and not sick:
            return
        if time.monotonic() > deadline:
            detail = "; ".join(sick) or "no answer"
            raise MachineError(f"etcd not healthy after {timeout:.0f}s: {detail}")
        executor.progress(runner.name, f"waiting for etcd health: {', '.join(sick) or '...'}")
        time.sleep(2)


# The etcd commands' handlers register when imported.
from k8sboot.executor import (  # noqa: E402, F401
    etcd_backup,
    etcd_maintenance,
    etcd_restore,
)
