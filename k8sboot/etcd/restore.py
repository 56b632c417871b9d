"""`etcd restore` the Kubernetes way, and its rollback: stage the snapshot on every
member, stop the API servers and etcd, swap the data in (the old kept), start etcd and
the API servers, check, confirm. Every phase is recorded, so a re-run resumes."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import yaml

from k8sboot.actions import Action, OnHost, OnThisMachine, listed
from k8sboot.errors import MachineError, UnsafeError, UserError
from k8sboot.etcd import files as etcd_files
from k8sboot.etcd import restore_record, topology
from k8sboot.etcd.backup import SaveSnapshot
from k8sboot.etcd.catalogue import PRE_RESTORE, Manifest, Store, now
from k8sboot.etcd.checks import VerifyFailed, local_check, upload_plain
from k8sboot.etcd.client import NO_TLS, EndpointStatus, EtcdCtl, peer_url
from k8sboot.etcd.external import START_TIMEOUT, EtcdCertificates, wait_healthy
from k8sboot.etcd.pki import CA, CertSpec, satisfies
from k8sboot.etcd.restore_record import RestoreRecord, kept_dir
from k8sboot.etcd.stores import store_at
from k8sboot.etcd.tools import BUMP_REVISION, EtcdTools, detect
from k8sboot.executor import Executor, Outcome, handles, raise_first, read_required
from k8sboot.facts import KUBECTL, Wanted, parse_nodes
from k8sboot.host_state import ETCD_RESTORE_STAGE_DIR
from k8sboot.kubeadm_node import (
    API_SERVER_PORT,
    APISERVER_MANIFEST,
    CA_CERT,
    ETCD_DATA_DIR,
    ETCD_MEMBER_DIR,
    ETCD_PKI_DIR,
    MANIFESTS_DIR,
)
from k8sboot.spec import Cluster, Host
from k8sboot.step import Context, Step
from k8sboot.transport import Connection

APISERVER = "kube-apiserver.yaml"


def tools_of(ctx: Context, host: Host) -> EtcdTools:
    return detect(ctx.view[host.name])


class EtcdRestore(Step):
    title = "etcd restore"

    def wants(self, cluster: Cluster) -> Wanted:
        return etcd_files.wanted(cluster)

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        onto: tuple[str, ...] = (),
        without_revision_bump: bool = False,
    ):
        self.store = store
        self.manifest = manifest
        self.onto = onto
        self.without_revision_bump = without_revision_bump

    def plan(self, ctx: Context) -> list[Action]:
        cluster = ctx.cluster
        manifest = self.manifest
        pending = restore_record.read(ctx.state)
        if pending is not None:
            if pending.backup != manifest.name:
                raise UnsafeError(f"another restore is in progress: {pending.how()}")
            return self._resume(ctx, pending)
        if manifest.cluster != cluster.name:
            ctx.notes.append(f"{manifest.name} is a backup of cluster {manifest.cluster}")
        external = topology.external(cluster)
        targets = self._targets(ctx)
        try:  # first: nothing is stopped for a backup that cannot be restored
            local_check(self.store, manifest, ctx.cluster)
        except VerifyFailed as error:
            raise UnsafeError(f"refusing to restore: {error}") from None
        apiservers = [h for h in cluster.control_planes if h.name in ctx.facts.hosts]
        self._check_reachable(ctx, targets)
        self._check_hosts(ctx, targets, apiservers)
        # One round trip per target, all at once rather than one after another.
        with ThreadPoolExecutor(max_workers=len(targets) or 1) as pool:
            tools = list(pool.map(lambda h: tools_of(ctx, h), targets))
        missing = [h.name for h, t in zip(targets, tools, strict=True) if t.etcdctl is None]
        if missing:
            raise MachineError(f"no etcdctl on {', '.join(missing)}: run `k8sboot up` first")
        bump = BUMP_REVISION if all(t.bump_revision for t in tools) else 0
        if not bump:
            weak = [h.name for h, t in zip(targets, tools, strict=True) if not t.bump_revision]
            why = next(t for t in tools if not t.bump_revision).missing_restore_flags()
            if not self.without_revision_bump:
                raise UnsafeError(
                    f"refusing to restore on {', '.join(weak)}: {why}; run `k8sboot up`, or "
                    "pass --without-revision-bump to restore the snapshot's revision anyway"
                )
            ctx.notes.append(f"WARNING: {', '.join(weak)}: {why} (--without-revision-bump)")
        since = now().isoformat()
        actions = self._snapshot_first(ctx, apiservers)
        tag = secrets.token_hex(4)
        actions.append(
            StageRestore(
                manifest.name,
                self.store.location,
                tuple(Target(h.name, h.name, peer_url(h.ip)) for h in targets),
                tag,
                bump,
            )
        )
        etcd_servers = ""
        if external and self.onto:
            etcd_servers = ",".join(topology.endpoint(h) for h in targets)
        record = RecordRestore(
            manifest.name,
            self.store.location,
            tuple(h.name for h in targets),
            tuple(h.name for h in apiservers),
            external,
            etcd_servers,
            tag,
            since,
        )
        return [*actions, record, *self._from_stop(ctx, record)]

    def _from_stop(self, ctx: Context, record: RecordRestore | RestoreRecord) -> list[Action]:
        """Everything from the first stop on; each safe to run again (a resumed restore)."""
        names, tag, external = tuple(record.targets), record.tag, record.external
        apiservers = tuple(record.apiservers)
        actions: list[Action] = [
            StopControlPlane(apiservers, names, external, tag),
            SwapDataDirs(names, tag, external),
        ]
        if not external:
            actions += self._reissue(ctx, [_host(ctx, n) for n in names])
        actions.append(StartRestoredEtcd(names, external, tag))
        actions.append(StartApiServers(apiservers, tag, record.etcd_servers))
        api = apiservers[0]
        actions.append(
            UpdateKubeadmConfig(api, ("controlPlaneEndpoint", "etcd endpoints", "cluster-info"))
        )
        actions.append(CheckRestored(api, record.backup, record.location))
        actions.append(ConfirmRestore(tag, tuple(dict.fromkeys(names + apiservers))))
        return actions

    def _resume(self, ctx: Context, record: RestoreRecord) -> list[Action]:
        _check_recorded_hosts(ctx, record)
        ctx.notes.append(
            f"resuming the restore of {record.backup} (tag {record.tag}, {record.phase})"
        )
        return self._from_stop(ctx, record)

    def _snapshot_first(self, ctx: Context, apiservers: list[Host]) -> list[Action]:
        """A snapshot of the data about to be replaced: from the etcd the API servers use
        now, which after losing etcd hosts (a restore --onto new ones) is not the targets'."""
        asked: list[str] = []
        for host in apiservers:
            endpoints, answering = etcd_in_use(ctx, host)
            asked += [e for e in endpoints if e not in asked]
            if answering:
                break
        else:
            where = f"the etcd the API servers use ({', '.join(asked)})" if asked else "etcd"
            ctx.notes.append(
                f"no pre-restore snapshot: {where} does not answer; what the targets hold now "
                "is kept on them instead"
            )
            return []
        # A follower when there is one: the leader has enough to do.
        chosen = min(answering, key=lambda s: s.member_id == s.leader_id)
        return [
            SaveSnapshot(
                host.name,
                chosen.endpoint,
                f"{chosen.member_id:x}",
                "the etcd the API servers use now",
                PRE_RESTORE,
            )
        ]

    def _targets(self, ctx: Context) -> list[Host]:
        cluster = ctx.cluster
        members = topology.members(cluster)
        role = "etcd" if topology.external(cluster) else "control-plane"
        if not self.onto:
            recorded = {url for m in self.manifest.members for url in m.peer_urls}
            wanted = {peer_url(h.ip) for h in members}
            if recorded and recorded != wanted:
                raise UserError(
                    f"the backup's etcd members ({', '.join(sorted(recorded))}) are not the "
                    f"cluster file's ({', '.join(sorted(wanted))}); to restore onto these "
                    f"hosts pass --onto {','.join(h.name for h in members)}"
                )
            return members
        targets: list[Host] = []
        for reference in self.onto:
            host = next((h for h in cluster.hosts if reference in (h.name, h.address, h.ip)), None)
            if host is None:
                raise UserError(f"--onto {reference}: no host of that name or address")
            if host not in members:
                raise UserError(f"--onto {reference}: {host.name} has no role {role}")
            if host not in targets:
                targets.append(host)
        for host in members:
            if host in targets or host.name not in ctx.facts.hosts:
                continue
            found = ctx.host_facts(host)
            running = (
                found.active("etcd") or found.exists(ETCD_MEMBER_DIR)
                if topology.external(cluster)
                else "etcd.yaml" in found.manifests
            )
            if running:
                raise UserError(
                    f"{host.name} runs etcd but is not in --onto: add it, or take it out of "
                    "the cluster first"
                )
        return targets

    def _check_reachable(self, ctx: Context, targets: list[Host]) -> None:
        needed = targets + [h for h in ctx.cluster.control_planes if h not in targets]
        down = [h.name for h in needed if h.name not in ctx.facts.hosts]
        if down:
            reasons = "; ".join(str(ctx.facts.errors.get(n, "unreachable")) for n in down)
            raise MachineError(
                f"cannot restore: {', '.join(down)} cannot be reached ({reasons}); every etcd "
                "target and control plane must be"
            )

    def _check_hosts(self, ctx: Context, targets: list[Host], apiservers: list[Host]) -> None:
        cluster = ctx.cluster
        if topology.external(cluster):
            pending = EtcdCertificates().plan(ctx)
            unset = [
                h.name
                for h in targets
                if not ctx.host_facts(h).file_hash(str(topology.EXTERNAL_ENV))
            ]
            if pending or unset:
                hosts = sorted({*unset, *(n for a in pending for n in a.hosts)})
                raise UserError(
                    f"etcd is not set up on {', '.join(hosts)}: run `k8sboot up` first "
                    "(it installs and configures etcd; the restore then replaces its data)"
                )
        else:
            bare = [h.name for h in targets if "etcd.yaml" not in ctx.host_facts(h).manifests]
            if bare:
                raise UserError(
                    f"{', '.join(bare)}: no kubeadm control plane (no etcd static pod): run "
                    "`k8sboot up` first to recreate it, then restore into it"
                )
        no_api = [h.name for h in apiservers if APISERVER not in ctx.host_facts(h).manifests]
        if no_api or not apiservers:
            raise UserError(
                f"no API server on {', '.join(no_api) or 'any control plane'}: run `k8sboot up` "
                "first"
            )

    def _reissue(self, ctx: Context, targets: list[Host]) -> list[Action]:
        """kubeadm's etcd server and peer certificates must name each target's address."""
        actions: list[Action] = []
        for host in targets:
            connection = ctx.view[host.name]
            ca = connection.read_file(f"{ETCD_PKI_DIR}/ca.crt")
            reasons = []
            # kubeadm's own names differ a little from k8sboot's: what matters is the CA
            # and the member's address.
            needed = CertSpec(host.name, ip_addresses=(host.ip,), server=True)
            for cert in topology.stacked_member_certs(host):
                pem = connection.read_file(cert.cert)
                why = "missing" if pem is None or ca is None else satisfies(pem, needed, ca)
                if why:
                    reasons.append(f"{cert.name}: {why}")
            if reasons:
                actions.append(ReissueMemberCerts(host.name, host.name, tuple(reasons)))
        return actions


def _host(ctx: Context, name: str) -> Host:
    host = ctx.cluster.host(name)
    if host is None:
        raise UserError(
            f"{name}, recorded in the restore in progress, is not in the cluster file: put it "
            "back to finish or undo the restore"
        )
    return host


def _check_recorded_hosts(ctx: Context, record: RestoreRecord) -> None:
    names = list(dict.fromkeys(record.targets + record.apiservers))
    for name in names:
        _host(ctx, name)
    down = [n for n in names if n not in ctx.facts.hosts]
    if down:
        reasons = "; ".join(str(ctx.facts.errors.get(n, "unreachable")) for n in down)
        raise MachineError(f"{', '.join(down)} cannot be reached ({reasons}); {record.how()}")


def etcd_in_use(ctx: Context, host: Host) -> tuple[list[str], list[EndpointStatus]]:
    """The endpoints the API server on `host` is configured with, and those that answer
    (asked from that host, with its etcd client certificate)."""
    connection = ctx.view[host.name]
    endpoints = etcd_servers(connection.read_file(APISERVER_MANIFEST))
    if not endpoints or tools_of(ctx, host).etcdctl is None:
        return endpoints, []
    ctl = EtcdCtl(connection, topology.tls_on(ctx.cluster, host), endpoints)
    return endpoints, [s for s in ctl.status(endpoints) if not s.errors]


def etcd_servers(manifest: bytes | None) -> list[str]:
    """The --etcd-servers of a kube-apiserver static pod manifest."""
    if not manifest:
        return []
    try:
        pod = yaml.safe_load(manifest) or {}
        command = pod["spec"]["containers"][0].get("command", [])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, AttributeError):
        return []
    for argument in command:
        if isinstance(argument, str) and argument.startswith("--etcd-servers="):
            return [e for e in argument.split("=", 1)[1].split(",") if e]
    return []


class EtcdRollback(Step):
    """Undo a restore in progress: the data from before back on every target, the API
    servers as they were, then started."""

    title = "etcd restore rollback"

    def wants(self, cluster: Cluster) -> Wanted:
        return etcd_files.wanted(cluster)

    def __init__(self, tag: str):
        self.tag = tag

    def plan(self, ctx: Context) -> list[Action]:
        record = restore_record.read(ctx.state)
        if record is None:
            raise UserError(
                f"no restore is in progress (no {ctx.state.root / restore_record.FILE})"
            )
        if record.tag != self.tag:
            raise UserError(f"--rollback {self.tag}: {record.how()}")
        _check_recorded_hosts(ctx, record)
        names, tag, external = tuple(record.targets), record.tag, record.external
        apiservers = tuple(record.apiservers)
        return [
            StopControlPlane(apiservers, names, external, tag),
            RollBackData(names, tag, external),
            StartRestoredEtcd(names, external, tag),
            StartApiServers(apiservers, tag, "", original=True),
            ConfirmRestore(tag, tuple(dict.fromkeys(names + apiservers)), rolled_back=True),
        ]


@dataclass(frozen=True)
class Target:
    """A host that receives the snapshot, and the member it becomes."""

    host: str
    name: str
    peer_url: str


@dataclass(frozen=True)
class StageRestore(Action):
    """Before anything stops: copy the backup to every target (decrypted on the way),
    check it there, and restore it into a scratch directory beside the data directory,
    as a new cluster (new token, the targets as its initial members)."""

    backup: str
    location: str  # of the catalogue (or directory) that holds it
    targets: tuple[Target, ...]
    tag: str  # names the scratch and set-aside directories
    bump_revision: int  # 0 when the hosts' tools cannot

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(t.host for t in self.targets)

    def describe(self) -> str:
        bump = (
            f", --bump-revision {self.bump_revision} --mark-compacted"
            if self.bump_revision
            else " (no --bump-revision: the tools lack it)"
        )
        initial = ",".join(f"{t.name}={t.peer_url}" for t in self.targets)
        return (
            f"copy {self.backup} to {listed(self.hosts)}, check it, restore it beside the data "
            f"directory as a new cluster {initial}{bump}"
        )


@dataclass(frozen=True)
class RecordRestore(OnThisMachine):
    """Record the restore as in progress on the operator's machine, before anything stops:
    from then on it is finished or rolled back, and `up`, `reset` and `node remove` refuse."""

    backup: str
    location: str
    targets: tuple[str, ...]
    apiservers: tuple[str, ...]
    external: bool
    etcd_servers: str
    tag: str
    since: str  # when it was planned: a pre-restore snapshot taken after is held

    def describe(self) -> str:
        return f"record the restore of {self.backup} (tag {self.tag}) as in progress"


@dataclass(frozen=True)
class StopControlPlane(Action):
    """Stop the API servers, then etcd: static pod manifests moved aside (kubeadm), or the
    etcd service stopped (external)."""

    apiservers: tuple[str, ...]
    etcd: tuple[str, ...]
    external: bool
    tag: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.apiservers + self.etcd))

    def describe(self) -> str:
        how = "stop the etcd service" if self.external else "move etcd.yaml aside"
        return (
            f"stop the API servers on {listed(self.apiservers)} (move kube-apiserver.yaml "
            f"aside), then etcd on {listed(self.etcd)} ({how})"
        )


@dataclass(frozen=True)
class SwapDataDirs(Action):
    """Set each target's member directory aside (kept, never deleted, outside what kubeadm
    manages) and move the restored one in its place. Done already on a host: left as is."""

    targets: tuple[str, ...]
    tag: str
    external: bool

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.targets

    def describe(self) -> str:
        return (
            f"on {listed(self.targets)}: keep the old data in {kept_dir(self.tag)}, put the "
            "restored data in place"
        )


@dataclass(frozen=True)
class ReissueMemberCerts(OnHost):
    """Re-issue kubeadm's etcd server and peer certificates of a control plane for its
    address, signed by the cluster's etcd CA (stacked etcd onto new addresses)."""

    ca_host: str
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"re-issue etcd server and peer certificates ({'; '.join(self.reasons)})"


@dataclass(frozen=True)
class StartRestoredEtcd(Action):
    """Start etcd on the targets on the restored data and wait for a healthy cluster."""

    etcd: tuple[str, ...]
    external: bool
    tag: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.etcd

    def describe(self) -> str:
        return f"start etcd on {listed(self.etcd)} and wait for a healthy cluster"


@dataclass(frozen=True)
class StartApiServers(Action):
    """Point the API servers at the etcd members (external etcd onto new hosts), start them
    and wait for the API."""

    apiservers: tuple[str, ...]
    tag: str
    etcd_servers: str  # for the API servers' --etcd-servers; "" keeps theirs
    original: bool = False  # a rollback: their manifests as they were before the restore

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.apiservers

    def describe(self) -> str:
        point = f" with --etcd-servers={self.etcd_servers}" if self.etcd_servers else ""
        if self.original:
            point = " as they were before the restore"
        return f"start the API servers on {listed(self.apiservers)}{point}, wait for the API"


@dataclass(frozen=True)
class UpdateKubeadmConfig(OnHost):
    """Bring kubeadm's stored ClusterConfiguration (kube-system/kubeadm-config) and the
    cluster-info discovery ConfigMap to the cluster as it now is."""

    changes: tuple[str, ...]

    def describe(self) -> str:
        return f"update kubeadm's stored configuration: {'; '.join(self.changes)}"


@dataclass(frozen=True)
class CheckRestored(OnHost):
    """etcd healthy, the API answering, the snapshot's Nodes back; kubelets whose Node the
    snapshot lacks are restarted so that they register again."""

    backup: str
    location: str

    def describe(self) -> str:
        return f"check etcd health and that the objects of {self.backup} are back"


@dataclass(frozen=True)
class ConfirmRestore(Action):
    """The restore (or its rollback) is done: the staging directories go (the data from
    before stays in its kept directory), and the record of the restore in progress."""

    tag: str
    staged_on: tuple[str, ...]
    rolled_back: bool = False

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.staged_on

    def describe(self) -> str:
        what = "rollback" if self.rolled_back else "restore"
        return f"confirm the {what} (tag {self.tag}): remove its staging directories"


@dataclass(frozen=True)
class RollBackData(Action):
    """Put back on each target the data from before the restore (kept in the tag's
    directory); the restored data is set aside beside it, not deleted."""

    targets: tuple[str, ...]
    tag: str
    external: bool

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.targets

    def describe(self) -> str:
        return (
            f"on {listed(self.targets)}: put back the data from before the restore (from "
            f"{kept_dir(self.tag)}); the restored data is kept beside it"
        )


STOP_TIMEOUT = 180


API_TIMEOUT = 300.0


def _stage(tag: str) -> str:
    return f"{ETCD_RESTORE_STAGE_DIR}/{tag}"


def _scratch(tag: str) -> str:
    return f"{ETCD_DATA_DIR}/k8sboot-restore-{tag}"


def _aside(tag: str) -> str:
    return f"{_stage(tag)}/manifests"


def _hosts(executor: Executor, names: tuple[str, ...]) -> list[Host]:
    hosts = [executor.ctx.cluster.host(n) for n in names]
    return [h for h in hosts if h is not None]


@handles(StageRestore)
def stage(executor: Executor, action: StageRestore) -> Outcome:
    ctx = executor.ctx
    store = store_at(ctx.cluster, action.location)
    manifest = store.read_manifest(action.backup)
    assert manifest is not None
    initial = ",".join(f"{t.name}={t.peer_url}" for t in action.targets)
    token = f"k8sboot-{ctx.cluster.name}-{action.tag}"
    by_host = {t.host: t for t in action.targets}

    def one(connection: Connection) -> None:
        target = by_host[connection.name]
        snapshot = f"{_stage(action.tag)}/snapshot.db"
        try:
            upload_plain(executor, connection, store, manifest, snapshot)
            offline = EtcdCtl(connection, NO_TLS, [], detect(connection))
            executor.progress(connection.name, "restore into a scratch directory")
            connection.run(f"rm -rf {_scratch(action.tag)}", timeout=600)
            offline.snapshot_restore(
                snapshot,
                _scratch(action.tag),
                target.name,
                initial,
                token,
                target.peer_url,
                action.bump_revision,
            )
        finally:
            connection.run(f"rm -f {snapshot}", check=False, timeout=60)

    results = executor.transport.each(by_host, one)
    if any(isinstance(r, BaseException) for r in results.values()):
        # Nothing was stopped: leave nothing of the attempt behind either.
        executor.transport.each(
            by_host,
            lambda c: c.run(f"rm -rf {_scratch(action.tag)}", check=False, timeout=600),
        )
    raise_first(results)
    return Outcome(tuple(by_host))


@handles(RecordRestore)
def record(executor: Executor, action: RecordRestore) -> Outcome:
    ctx = executor.ctx
    store = store_at(ctx.cluster, action.location)
    taken = sorted(
        (m.created, m.name)
        for m in store.manifests()
        if m.origin == PRE_RESTORE and m.cluster == ctx.cluster.name and m.created >= action.since
    )
    restore_record.write(
        ctx.state,
        RestoreRecord(
            tag=action.tag,
            backup=action.backup,
            location=action.location,
            targets=list(action.targets),
            apiservers=list(action.apiservers),
            external=action.external,
            etcd_servers=action.etcd_servers,
            phase="stopping",
            pre_restore=taken[-1][1] if taken else None,
        ),
    )
    kept = (
        f"restore tag {action.tag}: the data etcd had before is kept in "
        f"{kept_dir(action.tag)} on {', '.join(action.targets)} (k8sboot never deletes it)"
    )
    return Outcome((), notes=(kept,))


def _phase(executor: Executor, tag: str, phase: str) -> None:
    state = executor.ctx.state
    current = restore_record.read(state)
    if current is not None and current.tag == tag:
        current.phase = phase
        restore_record.write(state, current)


@contextlib.contextmanager
def _undoable(executor: Executor, tag: str | None = None) -> Iterator[None]:
    """Past the first stop, every failure says how to finish or undo the restore."""
    try:
        yield
    except MachineError as error:
        current = restore_record.read(executor.ctx.state)
        if current is None or tag not in (None, current.tag):
            raise
        raise MachineError(f"{error}; {current.how()}") from None


def _restoring(handler: Callable[[Executor, Any], Outcome]) -> Callable[[Executor, Any], Outcome]:
    @functools.wraps(handler)
    def run(executor: Executor, action: Any) -> Outcome:
        with _undoable(executor):
            return handler(executor, action)

    return run


def _wait_port_closed(connection: Connection, port: int, what: str) -> None:
    result = connection.run(
        f"for i in $(seq {STOP_TIMEOUT}); do "
        f"ss -Hltn 'sport = :{port}' | grep -q . || exit 0; sleep 1; done; exit 1",
        check=False,
        timeout=STOP_TIMEOUT + 30,
        shown=f"wait for {what} to stop",
    )
    if not result.ok:
        raise MachineError(f"{connection.name}: {what} still listens on :{port}")


@handles(StopControlPlane)
def stop(executor: Executor, action: StopControlPlane) -> Outcome:
    aside = _aside(action.tag)

    def move_aside(name: str, port: int, what: str):
        def run(connection: Connection) -> None:
            executor.progress(connection.name, f"stop {what}: {name} aside")
            connection.run(
                f"install -d -m 700 {aside} && if [ -e {MANIFESTS_DIR}/{name} ]; "
                f"then mv {MANIFESTS_DIR}/{name} {aside}/{name}; fi",
                timeout=60,
            )
            _wait_port_closed(connection, port, what)

        return run

    with _undoable(executor, action.tag):
        raise_first(
            executor.transport.each(
                action.apiservers,
                move_aside("kube-apiserver.yaml", API_SERVER_PORT, "the API server"),
            )
        )
        if action.external:

            def stop_service(connection: Connection) -> None:
                executor.progress(connection.name, "systemctl stop etcd")
                connection.run("systemctl stop etcd", timeout=STOP_TIMEOUT)

            raise_first(executor.transport.each(action.etcd, stop_service))
        else:
            raise_first(executor.transport.each(action.etcd, move_aside("etcd.yaml", 2380, "etcd")))
    _phase(executor, action.tag, "stopped")
    return Outcome(action.hosts)


@handles(SwapDataDirs)
def swap(executor: Executor, action: SwapDataDirs) -> Outcome:
    data = ETCD_DATA_DIR
    kept = kept_dir(action.tag)
    scratch = _scratch(action.tag)
    owner = f"chown -R etcd:etcd {data}/member; " if action.external else ""
    # Each branch is safe to run again: staged data still in the scratch directory means
    # the swap has not finished on this host; the marker means it has.
    script = (
        f"set -e; install -d -m 700 {kept}; cd {data}; "
        f"if [ -d {scratch}/member ]; then "
        f"  if [ -d member ]; then mv -T member {kept}/member; fi; "
        f"  mv -T {scratch}/member member; rmdir {scratch}; chmod 700 member; {owner}"
        f"  touch {kept}/swapped; "
        f"elif [ ! -e {kept}/swapped ]; then "
        f"  echo 'no restored data in {scratch} and no finished swap' >&2; exit 1; "
        "fi"
    )

    def one(connection: Connection) -> None:
        executor.progress(connection.name, f"keep {data}/member in {kept}; restored data in")
        connection.run(script, timeout=600, shown=f"swap {data}/member")

    with _undoable(executor, action.tag):
        raise_first(executor.transport.each(action.targets, one))
    _phase(executor, action.tag, "swapped")
    return Outcome(action.targets)


@handles(RollBackData)
def roll_back(executor: Executor, action: RollBackData) -> Outcome:
    data = ETCD_DATA_DIR
    kept = kept_dir(action.tag)
    # The data from before goes back; what was in its place (the restored data, and what
    # the cluster wrote since) is kept beside it. A host whose data never moved keeps it.
    script = (
        f"set -e; cd {data}; "
        f"if [ -d {kept}/member ]; then "
        f"  if [ -d member ]; then mv -T member {kept}/member.restored; fi; "
        f"  mv -T {kept}/member member; "
        f"elif [ -e {kept}/swapped ] && [ -d member ]; then "
        f"  mv -T member {kept}/member.restored; "
        "fi; "
        f"rm -f {kept}/swapped; rm -rf {_scratch(action.tag)}"
    )

    def one(connection: Connection) -> None:
        executor.progress(connection.name, f"put back {data}/member from {kept}")
        connection.run(script, timeout=600, shown=f"roll back {data}/member")

    with _undoable(executor, action.tag):
        raise_first(executor.transport.each(action.targets, one))
    _phase(executor, action.tag, "rolled back data")
    return Outcome(action.targets)


@handles(ReissueMemberCerts)
def reissue(executor: Executor, action: ReissueMemberCerts) -> Outcome:
    ctx = executor.ctx
    source = executor.transport[action.ca_host]
    pki = ETCD_PKI_DIR
    ca = CA.from_pem(
        read_required(source, f"{pki}/ca.crt"), read_required(source, f"{pki}/ca.key", secret=True)
    )
    host = ctx.cluster.host(action.host)
    assert host is not None
    connection = executor.transport[action.host]
    for cert in topology.stacked_member_certs(host):
        executor.progress(action.host, f"re-issue {cert.cert}")
        issued = ca.issue(cert.spec)
        connection.write_file(cert.key, issued.key_pem, 0o600)
        connection.write_file(cert.cert, issued.cert_pem, 0o644)
    return Outcome((action.host,))


def _move_back(aside: str, name: str):
    def run(connection: Connection) -> None:
        connection.run(
            f"if [ -e {aside}/{name} ]; then mv {aside}/{name} {MANIFESTS_DIR}/{name}; fi",
            timeout=60,
        )

    return run


@handles(StartRestoredEtcd)
def start_etcd(executor: Executor, action: StartRestoredEtcd) -> Outcome:

    def start_service(connection: Connection) -> None:
        executor.progress(connection.name, "systemctl start etcd")
        connection.run("systemctl start etcd", timeout=START_TIMEOUT)

    with _undoable(executor, action.tag):
        if action.external:
            raise_first(executor.transport.each(action.etcd, start_service))
        else:
            for name in action.etcd:
                executor.progress(name, "start etcd: etcd.yaml back")
            raise_first(
                executor.transport.each(action.etcd, _move_back(_aside(action.tag), "etcd.yaml"))
            )
        wait_healthy(executor, _hosts(executor, action.etcd))
    _phase(executor, action.tag, "etcd started")
    return Outcome(action.etcd)


@handles(StartApiServers)
def start_apiservers(executor: Executor, action: StartApiServers) -> Outcome:
    aside = _aside(action.tag)
    manifest = f"{aside}/kube-apiserver.yaml"
    original = f"{manifest}.before-restore"

    def point(connection: Connection) -> None:
        executor.progress(connection.name, f"--etcd-servers={action.etcd_servers}")
        # The manifest as it was stays beside it, for a rollback.
        connection.run(
            f"if [ -e {manifest} ]; then cp -n {manifest} {original} && "
            f"sed -i -E 's#(--etcd-servers=).*#\\1{action.etcd_servers}#' {manifest}; fi",
            timeout=60,
        )

    def as_before(connection: Connection) -> None:
        connection.run(f"if [ -e {original} ]; then mv {original} {manifest}; fi", timeout=60)

    with _undoable(executor, action.tag):
        if action.original:
            raise_first(executor.transport.each(action.apiservers, as_before))
        elif action.etcd_servers:
            raise_first(executor.transport.each(action.apiservers, point))
        for name in action.apiservers:
            executor.progress(name, "start the API server: kube-apiserver.yaml back")
        raise_first(
            executor.transport.each(action.apiservers, _move_back(aside, "kube-apiserver.yaml"))
        )
        wait_api(executor, action.apiservers[0])
    _phase(executor, action.tag, "API started")
    return Outcome(action.apiservers)


@handles(ConfirmRestore)
def confirm(executor: Executor, action: ConfirmRestore) -> Outcome:
    ctx = executor.ctx
    reachable = [h for h in action.staged_on if h in ctx.facts.hosts]
    raise_first(
        executor.transport.each(
            reachable,
            lambda c: c.run(
                f"rm -rf {_stage(action.tag)} && rm -f {kept_dir(action.tag)}/swapped",
                timeout=120,
            ),
        )
    )
    current = restore_record.read(ctx.state)
    if current is not None and current.tag == action.tag:
        restore_record.clear(ctx.state)
    what = "rolled back" if action.rolled_back else "restored"
    done = (
        f"{what} (tag {action.tag}); {kept_dir(action.tag)} on the etcd hosts keeps "
        + ("the restored data as member.restored" if action.rolled_back else "the data from before")
        + ": remove it once you no longer need it"
    )
    return Outcome(reachable, notes=(done,))


def wait_api(
    executor: Executor, host: str, timeout: float = API_TIMEOUT, quiet: bool = False
) -> dict:
    """Until the API answers through admin.conf (the endpoint); the Nodes it lists.
    `quiet` for a caller that polls and logs what changed (the answer is every Node)."""
    connection = executor.transport[host]
    deadline = time.monotonic() + timeout
    while True:
        result = connection.run(
            f"{KUBECTL} get nodes -o json --request-timeout=10s",
            check=False,
            timeout=60,
            shown="kubectl get nodes",
            quiet=quiet,
        )
        if result.ok:
            try:
                return parse_nodes(json.loads(result.stdout))
            except ValueError:
                pass
        if time.monotonic() > deadline:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise MachineError(f"the API did not answer within {timeout:.0f}s: {tail}")
        executor.progress(host, "waiting for the API")
        time.sleep(2)


@handles(UpdateKubeadmConfig)
@_restoring
def update_kubeadm_config(executor: Executor, action: UpdateKubeadmConfig) -> Outcome:
    """The restored kubeadm-config and cluster-info are the snapshot's: after a restore onto
    other hosts they name the old endpoint, etcd members or CA. kubeadm reads them for
    joins and upgrades."""
    ctx = executor.ctx
    cluster = ctx.cluster
    connection = executor.transport[action.host]
    changed = []
    config = _get(connection, "kube-system", "kubeadm-config")
    if config is not None:
        document = yaml.safe_load(config["data"].get("ClusterConfiguration", "")) or {}
        before = json.dumps(document, sort_keys=True)
        if cluster.control_plane_endpoint.address or document.get("controlPlaneEndpoint"):
            document["controlPlaneEndpoint"] = cluster.endpoint
        etcd = document.get("etcd", {})
        if topology.external(cluster) and "external" in etcd:
            etcd["external"]["endpoints"] = [
                topology.endpoint(h) for h in topology.members(cluster)
            ]
        if json.dumps(document, sort_keys=True) != before:
            config["data"]["ClusterConfiguration"] = yaml.safe_dump(document, sort_keys=False)
            _replace(connection, config)
            changed.append("kube-system/kubeadm-config ClusterConfiguration")
    info = _get(connection, "kube-public", "cluster-info")
    if info is not None:
        kubeconfig = yaml.safe_load(info["data"].get("kubeconfig", "")) or {}
        ca = base64.b64encode(read_required(connection, CA_CERT)).decode()
        server = f"https://{cluster.endpoint}"
        dirty = False
        for entry in kubeconfig.get("clusters", []):
            current = entry.get("cluster", {})
            if current.get("certificate-authority-data") != ca or current.get("server") != server:
                current["certificate-authority-data"] = ca
                current["server"] = server
                dirty = True
        if dirty:
            info["data"]["kubeconfig"] = yaml.safe_dump(kubeconfig, sort_keys=False)
            # Signatures of the old kubeconfig are void; the bootstrap signer re-signs.
            info["data"] = {
                k: v for k, v in info["data"].items() if not k.startswith("jws-kubeconfig-")
            }
            _replace(connection, info)
            changed.append("kube-public/cluster-info (CA and endpoint)")
    if changed:
        updated = "updated kubeadm's stored configuration: " + "; ".join(changed)
        return Outcome((action.host,), notes=(updated,))
    return Outcome(())


def _get(connection: Connection, namespace: str, name: str) -> dict | None:
    result = connection.run(
        f"{KUBECTL} -n {namespace} get configmap {name} -o json",
        check=False,
        timeout=60,
        shown=f"kubectl get configmap {namespace}/{name}",
    )
    return json.loads(result.stdout) if result.ok else None


def _lease_renewals(connection: Connection) -> dict[str, str] | None:
    """Node name -> its kubelet's last Lease renewal (kube-node-lease), as the API has it;
    None when the API did not answer."""
    result = connection.run(
        f"{KUBECTL} get leases -n kube-node-lease -o json --request-timeout=10s",
        check=False,
        timeout=60,
        shown="kubectl get leases -n kube-node-lease",
        quiet=True,  # polled: the caller logs what changed
    )
    if not result.ok:
        return None
    try:
        items = json.loads(result.stdout)["items"]
    except (ValueError, KeyError):
        return None
    return {
        lease["metadata"]["name"]: str(lease.get("spec", {}).get("renewTime")) for lease in items
    }


def _replace(connection: Connection, document: dict) -> None:
    connection.run(
        f"{KUBECTL} replace -f -",
        stdin=json.dumps(document).encode(),
        timeout=60,
        shown=f"kubectl replace configmap {document['metadata']['name']}",
    )


@handles(CheckRestored)
@_restoring
def check(executor: Executor, action: CheckRestored) -> Outcome:
    ctx = executor.ctx
    cluster = ctx.cluster
    manifest = store_at(cluster, action.location).read_manifest(action.backup)
    assert manifest is not None
    wait_healthy(executor)
    nodes = wait_api(executor, action.host)
    lost = sorted(set(manifest.nodes) - set(nodes))
    if lost:
        raise MachineError(
            f"restored, but the Nodes {', '.join(lost)} of {manifest.name} are not back"
        )
    # A kubelet whose Node the snapshot lacks registered after it was taken (a restore
    # onto new machines): it registers again when restarted.
    fresh = [
        h.name for h in cluster.kube_nodes if h.name not in nodes and h.name in ctx.facts.hosts
    ]
    for name in fresh:
        executor.progress(name, "restart the kubelet: its Node is not in the snapshot")
        executor.transport[name].run("systemctl restart kubelet", timeout=120)
    deadline = time.monotonic() + API_TIMEOUT
    while fresh and not set(fresh) <= set(nodes):
        if time.monotonic() > deadline:
            missing = sorted(set(fresh) - set(nodes))
            raise MachineError(f"the kubelets of {', '.join(missing)} did not register again")
        time.sleep(2)
        nodes = wait_api(executor, action.host, quiet=True)
    reachable = [
        h.name for h in cluster.kube_nodes if h.name in ctx.facts.hosts and h.name in nodes
    ]
    # The snapshot's Node conditions and Leases are as they were when it was taken: Ready
    # there says nothing about now. A kubelet that renewed its Lease since is talking to the
    # restored cluster (it renews every 10 s), and then its Ready is its own.
    restored: dict[str, str] | None = None  # the first answer: as the snapshot left them
    said = None
    while True:
        leases = _lease_renewals(executor.transport[action.host])
        if restored is None or leases is None:  # no answer yet to compare with
            restored = restored if restored is not None else leases
            waiting = list(reachable)
        else:
            waiting = [
                n
                for n in reachable
                if not nodes[n].ready or leases.get(n) in (None, restored.get(n))
            ]
        if waiting != said:  # a poll logs what changed, not every answer
            executor.ctx.log.write(
                action.host, f"kubelets not back yet: {', '.join(waiting) or 'none'}"
            )
            said = waiting
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise MachineError(f"restored, but not Ready after the restore: {', '.join(waiting)}")
        executor.progress(action.host, f"waiting for the kubelets of {', '.join(waiting)}")
        time.sleep(2)
        nodes = wait_api(executor, action.host, quiet=True)
    endpoints = [topology.endpoint(h) for h in topology.members(cluster)]
    runner = next(h for h in topology.tool_hosts(cluster) if h.name in ctx.facts.hosts)
    ctl = EtcdCtl(executor.transport[runner.name], topology.tls_on(cluster, runner), endpoints)
    revisions = [s.revision for s in ctl.status(endpoints)]
    stale = sorted(set(nodes) - {h.name for h in cluster.kube_nodes})
    notes = [
        f"restored {manifest.name} (revision {manifest.revision}); etcd is at revision "
        f"{max(revisions) if revisions else '?'}; Nodes: {', '.join(sorted(nodes))}"
        + (f"; re-registered: {', '.join(fresh)}" if fresh else "")
    ]
    if stale:
        notes.append(
            f"Nodes not in the cluster file (from the snapshot): {', '.join(stale)}; "
            "remove them once you are sure they are gone (`kubectl delete node`)"
        )
    return Outcome((), notes=tuple(notes))
