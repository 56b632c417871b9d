"""External etcd in `up` and `reset`: k8sboot's CA and certificates, the members'
configuration and service, new members one at a time; and undoing it all on reset."""

from __future__ import annotations

from pathlib import Path

from k8sboot.actions import Action, RunCommands
from k8sboot.etcd import topology
from k8sboot.etcd.actions import (
    AddEtcdMember,
    BootstrapEtcd,
    ConfigureEtcd,
    IssueEtcdCerts,
    PrepareRestoreTarget,
)
from k8sboot.etcd.files import (
    SNAPSHOT_SCRIPT,
    SNAPSHOT_SERVICE,
    SNAPSHOT_TIMER,
    TIMER_UNIT,
    bootstrap_file,
    bootstrap_token,
    member_files,
)
from k8sboot.etcd.pki import StoredCA, satisfies
from k8sboot.facts import HostFacts
from k8sboot.host_state import ETCD_SNAPSHOT_DIR
from k8sboot.kubeadm_node import ETCD_MEMBER_DIR
from k8sboot.spec import Host
from k8sboot.state import StateDir
from k8sboot.steps.base import Context, Step
from k8sboot.steps.files import changed, sha256

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
        return f"etcd is {found.service('etcd')['active']}"
    if not found.enabled("etcd"):
        return f"etcd is {found.service('etcd')['enabled']} at boot"
    return None


class EtcdMembers(Step):
    """The etcd service on the etcd hosts: a new cluster started on all of them together,
    a member added later one at a time, a changed configuration rolled out one member at
    a time (each waits for a healthy cluster)."""

    title = "etcd members"

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
            pending = [h for h in hosts if self._needs_start(ctx, h, with_data)]
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
            return [BootstrapEtcd(names, files, tuple(h.name for h in hosts))]
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
    def _needs_start(ctx: Context, host: Host, with_data: list[Host]) -> bool:
        stale = bool(changed(ctx, host, member_files(ctx.cluster, host)))
        return (
            host not in with_data or _member_fault(ctx.host_facts(host), stale, False) is not None
        )


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
