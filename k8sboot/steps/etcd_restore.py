"""`etcd restore`: disaster recovery of the whole cluster from one backup.

The plan refuses before anything changes unless: the backup passes its checks (size,
sha256, etcd's own checksum, decryption), every target and every API server host can be
reached, and the targets are the backup's members (by exact peer URL) or named with
--onto. It then: takes a snapshot first when the cluster still answers; stages the backup
on every target (copied, checked, restored into a scratch directory as a new cluster);
only then stops the API servers and etcd, swaps the data in (the old data set aside,
never deleted), starts etcd, then the API servers, and checks that the objects are back.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import yaml

from k8sboot.actions import Action
from k8sboot.errors import MachineError, UnsafeError, UserError
from k8sboot.etcd import restore_record, topology
from k8sboot.etcd.actions import (
    CheckRestored,
    ConfirmRestore,
    RecordRestore,
    ReissueMemberCerts,
    RollBackData,
    StageRestore,
    StartApiServers,
    StartRestoredEtcd,
    StopControlPlane,
    SwapDataDirs,
    Target,
    UpdateKubeadmConfig,
)
from k8sboot.etcd.catalogue import PRE_RESTORE, Manifest, Store, now
from k8sboot.etcd.client import EndpointStatus, EtcdCtl, peer_url
from k8sboot.etcd.pki import CertSpec, satisfies
from k8sboot.etcd.restore_record import RestoreRecord
from k8sboot.etcd.tools import BUMP_REVISION, EtcdTools, detect
from k8sboot.kubeadm_node import APISERVER_MANIFEST, ETCD_MEMBER_DIR, ETCD_PKI_DIR
from k8sboot.spec import Host
from k8sboot.steps.base import Context, Step
from k8sboot.steps.etcd_backup import SaveSnapshot, VerifyFailed, local_check
from k8sboot.steps.etcd_external import EtcdCertificates

APISERVER = "kube-apiserver.yaml"


def tools_of(ctx: Context, host: Host) -> EtcdTools:
    return detect(ctx.view[host.name])


class EtcdRestore(Step):
    title = "etcd restore"

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
                else "etcd.yaml" in found.data["manifests"]
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
            bare = [
                h.name for h in targets if "etcd.yaml" not in ctx.host_facts(h).data["manifests"]
            ]
            if bare:
                raise UserError(
                    f"{', '.join(bare)}: no kubeadm control plane (no etcd static pod): run "
                    "`k8sboot up` first to recreate it, then restore into it"
                )
        no_api = [
            h.name for h in apiservers if APISERVER not in ctx.host_facts(h).data["manifests"]
        ]
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
