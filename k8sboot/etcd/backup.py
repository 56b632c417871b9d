"""`etcd backup`: a snapshot from one member, checked on the host and here, encrypted,
catalogued, then retention."""

from __future__ import annotations

import contextlib
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from k8sboot.actions import Action, OnHost, OnThisMachine
from k8sboot.errors import MachineError, UserError
from k8sboot.etcd import restore_record, topology
from k8sboot.etcd.archive import (
    ALGORITHM,
    Key,
    SnapshotSink,
    backup_key,
)
from k8sboot.etcd.authenticity import seal
from k8sboot.etcd.catalogue import (
    PRE_RESTORE,
    Manifest,
    MemberRecord,
    Store,
    backup_name,
    listed_or_removed,
    names_taken,
    now,
    prune,
)
from k8sboot.etcd.checks import VerifyFailed
from k8sboot.etcd.client import EtcdCtl, Member, SnapshotStatus
from k8sboot.etcd.observe import EtcdView, host_for, observe
from k8sboot.etcd.stores import open_store
from k8sboot.etcd.tools import detect
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.host_state import ETCD_BACKUP_DIR
from k8sboot.spec import Cluster, Host
from k8sboot.step import Context, Step


def policy(cluster: Cluster) -> str:
    r = cluster.backup.retention
    return f"last {r.last}, hourly {r.hourly}, daily {r.daily}, weekly {r.weekly}"


def pick_member(ctx: Context, view: EtcdView, wanted: str | None) -> tuple[Member, Host, str]:
    """The member to snapshot and its host: `wanted` (a member's name or hex ID), else a
    healthy follower (sparing the leader), else the leader."""
    usable = []
    for member in view.members:
        host = host_for(ctx, member)
        if member.learner or host is None or host.name not in ctx.facts.hosts:
            continue
        usable.append((member, host))
    if wanted is not None:
        chosen = [m for m in view.members if wanted in (m.name, m.hex_id)]
        if not chosen:
            names = ", ".join(f"{m.name} ({m.hex_id})" for m in view.members)
            raise UserError(f"--member {wanted}: no such etcd member; members: {names}")
        member = chosen[0]
        host = host_for(ctx, member)
        if host is None or host.name not in ctx.facts.hosts:
            raise MachineError(f"member {wanted}: no host of the cluster file reachable for it")
        if not view.is_healthy(member):
            raise MachineError(f"member {wanted} is not healthy; choose another with --member")
        return member, host, "chosen with --member"
    followers = [(m, h) for m, h in usable if view.is_healthy(m) and m.id != view.leader_id]
    if followers:
        return (*followers[0], "a healthy follower")
    leaders = [(m, h) for m, h in usable if view.is_healthy(m)]
    if leaders:
        return (*leaders[0], "the leader: no healthy follower")
    raise MachineError(
        "no healthy etcd member whose host can be reached: " + "; ".join(view.problems())
    )


def snapshot_action(ctx: Context, member: str | None, origin: str) -> list[Action]:
    view = observe(ctx)
    if not view.answers:
        raise MachineError("etcd does not answer: " + "; ".join(view.problems()))
    chosen, host, why = pick_member(ctx, view, member)
    endpoint = view.endpoint_of(chosen) or topology.endpoint(host)
    return [SaveSnapshot(host.name, endpoint, chosen.name or chosen.hex_id, why, origin)]


class EtcdBackup(Step):
    title = "etcd backup"

    def __init__(self, member: str | None = None):
        self.member = member

    def plan(self, ctx: Context) -> list[Action]:
        store = open_store(ctx.cluster)
        if not ctx.api.answers:
            ctx.notes.append(
                f"the backup records no Nodes: the API on {ctx.api.host} does not answer "
                f"({ctx.api.reason}), so a restore of it cannot check that they are back"
            )
        return [
            *snapshot_action(ctx, self.member, "backup"),
            PruneBackups(store.location, policy(ctx.cluster)),
        ]


@dataclass(frozen=True)
class SaveSnapshot(OnHost):
    """Snapshot one member on its own host, verify it, bring it into the catalogue with a
    manifest (encrypted when a key is configured) and remove the file on the host."""

    endpoint: str
    member: str  # its name, or hex ID
    why: str
    origin: str = "backup"

    def describe(self) -> str:
        return f"snapshot member {self.member} ({self.endpoint}; {self.why}) into the catalogue"


@dataclass(frozen=True)
class PruneBackups(OnThisMachine):
    location: str
    policy: str

    def describe(self) -> str:
        return f"apply retention ({self.policy}) to {self.location}"


def ctl_for(executor: Executor, host_name: str, endpoints: list[str]) -> EtcdCtl:
    ctx = executor.ctx
    host = ctx.cluster.host(host_name)
    assert host is not None
    connection = executor.transport[host_name]
    return EtcdCtl(connection, topology.tls_on(ctx.cluster, host), endpoints, detect(connection))


class EmptyKeyspace(MachineError):
    """The etcd to back up holds no keys: not a Kubernetes cluster's data."""


@handles(SaveSnapshot)
def save(executor: Executor, action: SaveSnapshot) -> Outcome:
    try:
        manifest = take_snapshot(executor, action)
    except EmptyKeyspace:
        if action.origin != PRE_RESTORE:
            raise
        nothing = (
            f"no pre-restore snapshot: etcd member {action.member} ({action.endpoint}) holds "
            "no keys, nothing to keep"
        )
        return Outcome((), notes=(nothing,))
    size = manifest.snapshot["size"] / 2**20
    encrypted = f", encrypted ({ALGORITHM})" if manifest.encryption else ""
    saved = (
        f"backup {manifest.name}: {size:.1f} MiB, revision {manifest.revision}, "
        f"{manifest.keys if manifest.keys is not None else '?'} keys, from {action.member}"
        f"{encrypted}, in {open_store(executor.ctx.cluster).location}"
    )
    return Outcome((), notes=(saved,))


def take_snapshot(executor: Executor, action: SaveSnapshot) -> Manifest:
    ctx = executor.ctx
    cluster = ctx.cluster
    ctl = ctl_for(executor, action.host, [action.endpoint])
    connection = ctl.connection
    # A Kubernetes cluster's etcd always holds keys: none means another etcd, or one emptied,
    # and a snapshot of it kept as the latest backup would be restored over the real data.
    if ctl.count_keys(endpoint=action.endpoint) == 0:
        raise EmptyKeyspace(
            f"backup refused: etcd member {action.member} ({action.endpoint}) holds no keys, "
            "and a Kubernetes cluster's etcd always holds some (is this the cluster's etcd?); "
            "nothing was saved"
        )
    store = open_store(cluster)
    key = backup_key(cluster, store)
    when = now()
    name = backup_name(cluster.name, when, names_taken(store))
    remote = f"{ETCD_BACKUP_DIR}/{name}.db"
    connection.run(f"install -d -m 700 {ETCD_BACKUP_DIR}", timeout=60)
    started = time.monotonic()
    # The manifest's membership and version, asked while the snapshot is taken.
    asked = ThreadPoolExecutor(max_workers=1)
    membership = asked.submit(lambda: (ctl.members(), ctl.status([action.endpoint])))
    asked.shutdown(wait=False)
    file_name = f"{name}.db.enc" if key else f"{name}.db"
    with listed_or_removed(store, file_name):
        try:
            executor.progress(
                action.host, f"etcdctl snapshot save ({action.endpoint}), copied as saved"
            )
            produce = ctl.snapshot_save_streaming(action.endpoint, remote)
            facts = check_and_fetch(
                executor, ctl, remote, store, file_name, key, action.endpoint, produce
            )
        finally:
            connection.run(f"rm -f {remote} {remote}.part {remote}.err", check=False, timeout=60)
        status: SnapshotStatus = facts["status"]
        members, versions = membership.result()
        manifest = Manifest(
            name=name,
            cluster=cluster.name,
            created=when.isoformat(),
            origin=action.origin,
            kubernetes_version=cluster.kubernetes.version,
            etcd_version=versions[0].version if versions else "",
            source={"host": action.host, "member": action.member, "endpoint": action.endpoint},
            members=[MemberRecord(m.hex_id, m.name, list(m.peer_urls)) for m in members],
            revision=status.revision,
            hash=status.hash,
            total_keys=status.total_keys,
            total_size=status.total_size,
            keys=facts.get("keys"),
            hash_kv=facts.get("hash_kv"),
            snapshot={"size": facts["size"], "sha256": facts["sha256"]},
            file={"name": file_name, "size": facts["stored"], "sha256": facts["file_sha256"]},
            encryption={"algorithm": ALGORITHM, "key_id": key.id} if key else None,
            nodes=sorted(ctx.nodes),
            verification={
                "integrity": "ok",
                "checked": when.isoformat(),
                "seconds": {
                    "save_and_copy": round(facts["fetched"], 2),
                    "total": round(time.monotonic() - started, 2),
                },
            },
        )
        seal(manifest, key)
        store.write_manifest(manifest)
    return manifest


def check_and_fetch(
    executor: Executor,
    ctl: EtcdCtl,
    remote: str,
    store: Store,
    file_name: str,
    key: Key | None,
    endpoint: str | None,
    produce: str | None = None,
) -> dict[str, Any]:
    """Copy `remote` into the store (hashed, encrypted on the way) and check it: the copy
    against etcd's checksum at its end, the host's file against the copy (size and that
    checksum, so that what `snapshot status` reads there is the same snapshot), and, when
    `endpoint` still serves the snapshot's revision, the live key count and KV hash at it.
    `produce` is a command that writes `remote` while streaming it (the copy is then done
    with the save, and the checks follow it; otherwise they run beside the copy). Raises
    VerifyFailed unless everything agrees."""
    connection = ctl.connection
    found: dict[str, Any] = {}
    command = produce or f"cat {shlex.quote(remote)}"
    quoted = shlex.quote(remote)

    def fetch() -> None:
        started = time.monotonic()
        with store.writer(file_name) as out:
            sink = SnapshotSink(out, key)
            connection.run(
                command,
                stdout_to=sink,
                timeout=3700,
                shown=f"copy {remote}",  # type: ignore[arg-type]
            )
            sink.close()
            verify_sink(sink, remote, connection.name)
        found.update(
            size=sink.size,
            trailer=sink.trailer,
            sha256=sink.plain_sha.hexdigest(),
            stored=sink.stored,
            file_sha256=sink.file_sha.hexdigest(),
            fetched=time.monotonic() - started,
        )

    def remote_end() -> tuple[int, bytes]:
        result = connection.run(
            f"stat -c %s {quoted} && tail -c 32 {quoted} | od -An -v -tx1", timeout=60
        )
        size, *octets = result.stdout.split()
        return int(size), bytes.fromhex("".join(octets))

    def live(pool: ThreadPoolExecutor, status: SnapshotStatus) -> None:
        if endpoint is None:
            return
        keys = pool.submit(ctl.count_keys, status.revision, endpoint)
        hash_kv = pool.submit(ctl.hash_kv, endpoint, status.revision)
        # Compacted past it already, or busy: the manifest says "?".
        with contextlib.suppress(MachineError):
            found["keys"], found["hash_kv"] = keys.result(), hash_kv.result()

    if produce:
        fetch()  # the file exists once the save (and with it the copy) is done
    with ThreadPoolExecutor(max_workers=4) as pool:
        end = pool.submit(remote_end)
        copied = None if produce else pool.submit(fetch)
        found["status"] = ctl.snapshot_status(remote)
        live(pool, found["status"])
        there = end.result()
        if copied is not None:
            copied.result()
    if there != (found["size"], found["trailer"]):
        raise VerifyFailed(
            f"{connection.name}: the downloaded snapshot differs from {remote} (size or "
            "etcd's checksum); nothing was kept"
        )
    if found["status"].total_size <= 0:
        raise VerifyFailed(f"{connection.name}: snapshot status reads an empty snapshot")
    return found


def verify_sink(sink: SnapshotSink, remote: str, host: str) -> None:
    if not sink.trailer_ok:
        raise VerifyFailed(
            f"{host}: {remote} fails etcd's own checksum (its last 32 bytes are not the "
            "sha256 of the rest): not a complete etcd snapshot"
        )


@handles(PruneBackups)
def prune_backups(executor: Executor, action: PruneBackups) -> Outcome:
    ctx = executor.ctx
    store = open_store(ctx.cluster)
    pending = restore_record.read(ctx.state)
    held = [pending.pre_restore] if pending and pending.pre_restore else []
    gone, problems = prune(store, ctx.cluster.name, ctx.cluster.backup.retention, held)
    removed = [f"retention removed {len(gone)} backup(s): {', '.join(gone)}"] if gone else []
    warnings = [f"warning: {line}" for line in [*problems, *store.unreadable.values()]]
    return Outcome((), notes=(*removed, *warnings))
