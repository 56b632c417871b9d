"""External etcd installed by k8sboot: certificates, the members' service and
configuration, membership (one member at a time), and its reset."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from k8sboot.actions import Action, OnHost, RunCommands, listed
from k8sboot.errors import MachineError
from k8sboot.etcd import files as etcd_files
from k8sboot.etcd import topology
from k8sboot.etcd.client import EtcdCtl, member_by_peer_url, peer_url
from k8sboot.etcd.files import (
    SNAPSHOT_SCRIPT,
    SNAPSHOT_SERVICE,
    SNAPSHOT_TIMER,
    TIMER_UNIT,
    bootstrap_file,
    bootstrap_token,
    member_files,
)
from k8sboot.etcd.pki import CA, Issued, StoredCA, satisfies
from k8sboot.executor import Executor, Outcome, handles, raise_first
from k8sboot.facts import HostFacts, Wanted
from k8sboot.host_state import ETCD_SNAPSHOT_DIR
from k8sboot.kubeadm_node import (
    ETCD_DATA_DIR,
    ETCD_MEMBER_DIR,
    ETCD_PKI_DIR,
    KUBERNETES_DIR,
    PKI_DIR,
)
from k8sboot.render import RenderedFile
from k8sboot.spec import Cluster, Host
from k8sboot.state import StateDir, write_private
from k8sboot.step import Context, Step, changed, sha256
from k8sboot.transport import Connection

SHARED = "apiserver-etcd-client"  # one certificate for every control plane, as kubeadm shares it


def ca_store(state: StateDir) -> StoredCA:
    return StoredCA(state.root / "etcd-pki")


def issued_record(state: StateDir, host: str, name: str) -> Path:
    """The local copy of a certificate k8sboot issued (public; keys are never kept)."""
    owner = "control-planes" if name == SHARED else host
    return state.root / "etcd-pki" / "issued" / owner / f"{name}.crt"


def cert_drift(ctx: Context, host: Host, cert: topology.CertFile, ca_pem: bytes | None) -> str:
    """Why a certificate must be (re)issued or (re)written on a host; "" when it is right."""
    found = ctx.host_facts(host)
    record = issued_record(ctx.state, host.name, cert.name)
    if ca_pem is None or not record.exists():
        return "not issued yet"
    why = satisfies(record.read_bytes(), cert.spec, ca_pem)
    if why:
        return why
    if found.file_hash(cert.cert) != sha256(record.read_text()):
        return "missing or different on the host"
    if found.file_hash(cert.key) is None:
        return "its key is missing on the host"
    return ""


class EtcdCertificates(Step):
    """k8sboot's etcd CA (created in the state directory on first use) and the
    certificates signed by it: server, peer and etcdctl on each etcd host, and the API
    server's client certificate and the CA on each control plane (where kubeadm's
    ClusterConfiguration expects them), before kubeadm init."""

    title = "etcd certificates"

    def wants(self, cluster: Cluster) -> Wanted:
        return etcd_files.wanted(cluster)

    def plan(self, ctx: Context) -> list[Action]:
        if not topology.external(ctx.cluster):
            return []
        ca_pem = ca_store(ctx.state).cert_pem()
        actions: list[Action] = []
        for host in topology.tool_hosts(ctx.cluster):
            found = ctx.host_facts(host)
            ca_needed = ca_pem is None or found.file_hash(topology.ca_path_on(host)) != sha256(
                ca_pem.decode()
            )
            names, reasons = [], []
            for cert in topology.external_certs(ctx.cluster, host):
                why = cert_drift(ctx, host, cert, ca_pem)
                if why:
                    names.append(cert.name)
                    reasons.append(f"{cert.name}: {why}")
            if ca_needed and not reasons:
                reasons.append("CA certificate missing or different")
            if names or ca_needed:
                member_certs = {"server", "peer"} & set(names)
                restart = bool(member_certs or ca_needed) and host.has("etcd")
                actions.append(
                    IssueEtcdCerts(
                        host.name,
                        tuple(names),
                        ca_needed,
                        tuple(reasons),
                        restart_etcd=restart and found.active("etcd"),
                    )
                )
        return actions


def _member_fault(found: HostFacts, stale: bool, unread: bool) -> str | None:
    """Why a member that has data must be (re)configured or started, if it must."""
    if stale:
        return "its configuration changed"
    if unread:
        return "running on a configuration it never read"
    if not found.active("etcd"):
        return f"etcd is {found.service('etcd').active}"
    if not found.enabled("etcd"):
        return f"etcd is {found.service('etcd').enabled} at boot"
    return None


class EtcdMembers(Step):
    """The etcd service on the etcd hosts: a new cluster started on all of them together,
    a member added later one at a time, a changed configuration rolled out one member at
    a time (each waits for a healthy cluster)."""

    title = "etcd members"

    def wants(self, cluster: Cluster) -> Wanted:
        return etcd_files.wanted(cluster)

    def plan(self, ctx: Context) -> list[Action]:
        cluster = ctx.cluster
        if not topology.external(cluster):
            return []
        hosts = cluster.with_role("etcd")
        token = bootstrap_token(cluster)
        initial = topology.initial_cluster(hosts)
        with_data = [h for h in hosts if ctx.host_facts(h).exists(ETCD_MEMBER_DIR)]
        first_bootstrap = {h.name: bootstrap_file(h, initial, "new", token).content for h in hosts}
        bootstrapping = all(
            ctx.host_facts(h).file_hash(str(topology.EXTERNAL_BOOTSTRAP_ENV))
            == sha256(first_bootstrap[h.name])
            for h in with_data
        )
        if not with_data and ctx.initialised:
            return self._await_restore(ctx, hosts)
        if not with_data or (bootstrapping and not self._formed(ctx, with_data)):
            # Only the members that are not running with their files: a member already
            # waiting for (or part of) the quorum must not be restarted with the rest.
            why = {h.name: self._start_reason(ctx, h, with_data) for h in hosts}
            pending = [h for h in hosts if why[h.name]]
            if not pending:
                return []
            files = tuple(
                (
                    h.name,
                    (*member_files(cluster, h), bootstrap_file(h, initial, "new", token)),
                )
                for h in pending
            )
            names = tuple(h.name for h in pending)
            reasons = tuple((name, why[name] or "") for name in names)
            return [BootstrapEtcd(names, files, tuple(h.name for h in hosts), reasons)]
        actions: list[Action] = []
        running = [h for h in with_data if ctx.host_facts(h).active("etcd")]
        for host in hosts:
            found = ctx.host_facts(host)
            wanted = member_files(cluster, host)
            if host not in with_data:
                via = running[0] if running else with_data[0]
                actions.append(AddEtcdMember(host.name, via.name, tuple(wanted)))
                continue
            stale = changed(ctx, host, wanted)
            unread = any(found.started_before("etcd", str(f.path)) for f in wanted)
            why = _member_fault(found, bool(stale), unread)
            if why:
                actions.append(ConfigureEtcd(host.name, stale, bool(stale or unread), why))
        return actions

    @staticmethod
    def _await_restore(ctx: Context, hosts: list[Host]) -> list[Action]:
        """The control planes were initialised against an etcd whose data none of these
        hosts holds: that etcd is lost (or runs on hosts the cluster file no longer
        lists). Its members are installed and configured, and left stopped for `etcd
        restore --onto`. Not started as a new cluster: an empty etcd that answers would be
        taken for the cluster's (the restore would snapshot it as the data it replaces,
        and anything pointed at it would write into an empty cluster). The API servers
        keep their --etcd-servers: the restore points them at these hosts once the data
        is back (StartApiServers)."""
        names = tuple(h.name for h in hosts)
        ctx.notes.append(
            f"etcd on {', '.join(names)} is configured and left stopped: the control planes "
            "were set up with an etcd whose data is on none of them; restore a backup into "
            f"them: `k8sboot etcd restore BACKUP --onto {','.join(names)}` (README: "
            "Restoring after losing etcd)"
        )
        actions: list[Action] = []
        for host in hosts:
            stale = changed(ctx, host, member_files(ctx.cluster, host))
            if stale:
                actions.append(PrepareRestoreTarget(host.name, stale, names))
        return actions

    @staticmethod
    def _formed(ctx: Context, with_data: list[Host]) -> bool:
        """Every member of the first bootstrap has data and runs: it has formed."""
        hosts = ctx.cluster.with_role("etcd")
        return len(with_data) == len(hosts) and all(ctx.host_facts(h).active("etcd") for h in hosts)

    @staticmethod
    def _start_reason(ctx: Context, host: Host, with_data: list[Host]) -> str | None:
        """Why the member must be (re)started with the bootstrap's files, if it must."""
        if host not in with_data:
            return "not started yet"
        stale = bool(changed(ctx, host, member_files(ctx.cluster, host)))
        return _member_fault(ctx.host_facts(host), stale, False)


RESET_ETCD = " ; ".join(
    [
        "systemctl disable --now etcd 2>/dev/null",
        f"rm -rf {ETCD_MEMBER_DIR} {topology.EXTERNAL_PKI} {topology.EXTERNAL_ENV} "
        f"{topology.EXTERNAL_BOOTSTRAP_ENV} {topology.EXTERNAL_UNIT}",
        "systemctl daemon-reload",
        "true",
    ]
)


RESET_TIMER = " ; ".join(
    [
        f"systemctl disable --now {TIMER_UNIT} 2>/dev/null",
        f"systemctl stop {SNAPSHOT_SERVICE.name} 2>/dev/null",  # a snapshot being taken
        f"rm -f {SNAPSHOT_TIMER} {SNAPSHOT_SERVICE} {SNAPSHOT_SCRIPT}",
        f"rm -rf {ETCD_SNAPSHOT_DIR}",
        "systemctl daemon-reload",
        "true",
    ]
)


class ResetEtcd(Step):
    """What `reset` undoes beyond kubeadm: external etcd members (service stopped, data,
    configuration and certificates removed; k8sboot's CA stays in the state directory)
    and the scheduled-snapshot timers with the snapshots they took."""

    title = "etcd reset"

    def wants(self, cluster: Cluster) -> Wanted:
        return etcd_files.wanted(cluster)

    def plan(self, ctx: Context) -> list[Action]:
        commands: list[tuple[str, str]] = []
        title = "etcd reset"
        for host in ctx.cluster.hosts:
            if host.name not in ctx.facts.hosts:
                continue
            found = ctx.host_facts(host)
            if host.has("etcd") and (
                found.active("etcd")
                or found.exists(ETCD_MEMBER_DIR)
                or found.file_hash(str(topology.EXTERNAL_ENV))
                or found.file_hash(str(topology.EXTERNAL_UNIT))
            ):
                commands.append((host.name, RESET_ETCD))
            if scheduled_leftovers(found):
                commands.append((host.name, RESET_TIMER))
                title = f"etcd reset (and the scheduled snapshots in {ETCD_SNAPSHOT_DIR})"
        return [RunCommands(tuple(commands), title)] if commands else []


def scheduled_leftovers(found: HostFacts) -> bool:
    """The scheduled-snapshot timer or the snapshots it took are on the host."""
    return bool(
        found.file_hash(str(SNAPSHOT_TIMER))
        or found.file_hash(str(SNAPSHOT_SCRIPT))
        or found.exists(ETCD_SNAPSHOT_DIR)
    )


@dataclass(frozen=True)
class IssueEtcdCerts(OnHost):
    """Write certificates signed by k8sboot's etcd CA (and the CA certificate) to a host;
    restart its etcd member afterwards when it already runs."""

    certs: tuple[str, ...]  # names from topology.external_certs
    ca: bool
    reasons: tuple[str, ...] = ()
    restart_etcd: bool = False

    def describe(self) -> str:
        what = [f"{name} certificate" for name in self.certs]
        if self.ca:
            what.insert(0, "the etcd CA certificate")
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        then = ", then restart etcd" if self.restart_etcd else ""
        return f"write {', '.join(what)}{why}{then}"


@dataclass(frozen=True)
class BootstrapEtcd(Action):
    """Configure and start every member of a new external etcd cluster together."""

    members: tuple[str, ...]  # the ones to start
    files: tuple[tuple[str, tuple[RenderedFile, ...]], ...]  # (host, files)
    initial: tuple[str, ...] = ()  # every member of the first bootstrap
    reasons: tuple[tuple[str, str], ...] = ()  # (member, why it must start)

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.members

    def describe(self) -> str:
        if set(self.members) == set(self.initial):
            return f"start a new etcd cluster on {listed(self.members)}"
        why = dict(self.reasons)
        members = ", ".join(f"{m} ({why[m]})" if why.get(m) else m for m in self.members)
        return (
            f"start etcd on {members}, with the running members of the cluster "
            f"first started on {listed(self.initial)}"
        )


@dataclass(frozen=True)
class AddEtcdMember(Action):
    """Add a member to a running external etcd cluster through a healthy member, then
    configure and start it (one member at a time)."""

    host: str
    via: str
    files: tuple[RenderedFile, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host, self.via)

    def describe(self) -> str:
        return f"add {self.host} as an etcd member (through {self.via}), then start it"


@dataclass(frozen=True)
class ConfigureEtcd(OnHost):
    """Rewrite a member's configuration and restart it, or just start it; waits until the
    cluster is healthy again (members are restarted one at a time)."""

    files: tuple[RenderedFile, ...]
    restart: bool
    why: str = ""

    def describe(self) -> str:
        paths = ", ".join(str(f.path) for f in self.files)
        verb = "restart" if self.restart else "start"
        why = f" ({self.why})" if self.why else ""
        return f"write {paths}, then {verb} etcd{why}" if paths else f"{verb} etcd{why}"


@dataclass(frozen=True)
class PrepareRestoreTarget(OnHost):
    """Write a member's configuration and unit, and leave etcd stopped and disabled: its
    data comes from `k8sboot etcd restore --onto`, which starts it."""

    files: tuple[RenderedFile, ...]
    onto: tuple[str, ...]  # every host the restore is to go onto

    def describe(self) -> str:
        paths = ", ".join(str(f.path) for f in self.files)
        return (
            f"write {paths}; etcd stays stopped until `k8sboot etcd restore BACKUP --onto "
            f"{','.join(self.onto)}`"
        )


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
    said = None
    while True:
        health = ctl.health(endpoints, polled=True)  # a member still starting: ask again
        sick = [h.endpoint + (f" ({h.error})" if h.error else "") for h in health if not h.healthy]
        # A poll every second or so for minutes: the log gets what changed.
        state = "; ".join(sick) if health else "no answer"
        if state != said:
            ctx.log.write(runner.name, f"etcd healthy? {state or 'all healthy'}")
            said = state
        if health and not sick:
            return
        if time.monotonic() > deadline:
            detail = "; ".join(sick) or "no answer"
            raise MachineError(f"etcd not healthy after {timeout:.0f}s: {detail}")
        executor.progress(runner.name, f"waiting for etcd health: {', '.join(sick) or '...'}")
        time.sleep(1)
