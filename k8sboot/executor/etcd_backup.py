"""Snapshots into the catalogue, retention, test restores, pulls of scheduled snapshots.

A snapshot is saved on the member's own host and downloaded as it is written (hashed and
encrypted on the way); the copy must pass etcd's own checksum (the sha256 at its end), the
file on the host must end with the same checksum at the same size, and `snapshot status`
reads it there, before the manifest is written. The file on the host is removed whatever
happens.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from k8sboot.errors import MachineError
from k8sboot.etcd import restore_record, topology
from k8sboot.etcd.actions import (
    PruneBackups,
    PullSnapshots,
    RecordIntegrity,
    SaveSnapshot,
    TestRestore,
)
from k8sboot.etcd.archive import ALGORITHM, Key, PlainReader, SnapshotSink, load_key
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
    open_store,
    prune,
    store_at,
)
from k8sboot.etcd.client import NO_TLS, EtcdCtl, SnapshotStatus
from k8sboot.etcd.scheduled import (
    SEALED_SUFFIX,
    Undecryptable,
    decrypt,
    parse_status_file,
    status_path,
)
from k8sboot.etcd.tools import EtcdTools, detect
from k8sboot.executor.core import Executor, Outcome, handles
from k8sboot.host_state import ETCD_BACKUP_DIR, ETCD_VERIFY_DIR
from k8sboot.spec import Cluster
from k8sboot.steps.etcd_backup import VerifyFailed, check_authentic, pulled_name
from k8sboot.transport import Connection


def backup_key(cluster: Cluster, store: Store | None = None) -> Key | None:
    path = cluster.backup.encryption_key_file
    if path is None:
        return None
    local = getattr(store, "directory", None)
    return load_key(path, local)


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
        executor.ctx.notes.append(
            f"no pre-restore snapshot: etcd member {action.member} ({action.endpoint}) holds "
            "no keys, nothing to keep"
        )
        return Outcome(())
    size = manifest.snapshot["size"] / 2**20
    encrypted = f", encrypted ({ALGORITHM})" if manifest.encryption else ""
    executor.ctx.notes.append(
        f"backup {manifest.name}: {size:.1f} MiB, revision {manifest.revision}, "
        f"{manifest.keys if manifest.keys is not None else '?'} keys, from {action.member}"
        f"{encrypted}, in {open_store(executor.ctx.cluster).location}"
    )
    return Outcome(())


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
            facts = _check_and_fetch(
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


def _check_and_fetch(
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
            _verify_sink(sink, remote, connection.name)
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


def _verify_sink(sink: SnapshotSink, remote: str, host: str) -> None:
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
    if gone:
        ctx.notes.append(f"retention removed {len(gone)} backup(s): {', '.join(gone)}")
    for line in [*problems, *store.unreadable.values()]:
        if f"warning: {line}" not in ctx.notes:
            ctx.notes.append(f"warning: {line}")
    return Outcome(())


# -- test restore -------------------------------------------------------------------------


def upload_plain(
    executor: Executor, connection: Connection, store: Store, manifest: Manifest, remote: str
) -> None:
    """Copy a backup's plain snapshot to `remote` (0600), decrypting on the way, and check
    that all of it arrived. The bytes were checked against the manifest's sha256 before
    (locally), SSH guards them on the way, and etcd checks its own checksum at the end of
    the file whenever it restores from it: no second pass over the file here. The file is
    hashed as it is read, though, and its manifest authenticated again: neither may have
    been swapped since they were checked."""
    key = check_authentic(store, manifest, executor.ctx.cluster)
    directory = remote.rsplit("/", 1)[0]
    connection.run(f"install -d -m 700 {shlex.quote(directory)}", timeout=60)
    size = manifest.snapshot["size"]
    encrypted = manifest.encryption is not None
    with (
        store.local_copy(manifest.file["name"]) as path,
        PlainReader(path, key, encrypted) as reader,
    ):
        executor.progress(connection.name, f"copy {manifest.name} ({size} B)")
        arrived = connection.run(
            f"umask 077 && cat > {shlex.quote(remote)} && stat -c %s {shlex.quote(remote)}",
            stdin=reader,  # type: ignore[arg-type]
            timeout=3600,
            shown=f"upload {remote}",
        ).stdout.strip()
    if reader.file_sha.hexdigest() != manifest.file["sha256"]:
        raise VerifyFailed(
            f"backup {manifest.name}: {manifest.file['name']} changed since it was checked "
            "(its sha256 differs from the manifest's)"
        )
    if arrived != str(size):
        raise VerifyFailed(f"{connection.name}: {remote} arrived with {arrived} of {size} bytes")


def check_status(found: SnapshotStatus, manifest: Manifest, where: str) -> None:
    expected = (manifest.revision, manifest.hash, manifest.total_keys)
    got = (found.revision, found.hash, found.total_keys)
    if got != expected:
        raise VerifyFailed(
            f"{where}: snapshot status says revision {got[0]}, hash {got[1]}, {got[2]} key "
            f"revisions; the manifest says {expected[0]}, {expected[1]}, {expected[2]}"
        )


# The throw-away etcd serves every Secret of the cluster without TLS or authentication, so
# it listens on unix sockets only, in the 0700 work directory that only root can enter: no
# TCP port, no other process on the host. etcd binds a unix URL's host as the socket's path,
# relative to its working directory (the peer listener takes nothing else, and advertised
# URLs must read "host:port"; etcd v3.5.16 server/embed/etcd.go configurePeerListeners and
# config.go checkHostURLs, the same in v3.4.23), hence "NAME:0" and WorkingDirectory. The
# peer socket is never dialled: the member is alone in its cluster.
_CLIENT_SOCKET, _PEER_SOCKET = "client.sock:0", "peer.sock:0"


def served_revision(snapshot_revision: int) -> int:
    """The revision a member restored from a snapshot serves. `snapshot status` reads the
    revision of the snapshot's last key, 0 when it holds none (etcdutl/snapshot/
    v3_snapshot.go Status, etcd v3.5.16; clientv3/snapshot in v3.4); a member's store
    starts at revision 1 and only keys move it on (server/mvcc/kvstore.go NewStore and
    restore)."""
    return max(snapshot_revision, 1)


@handles(RecordIntegrity)
def record_integrity(executor: Executor, action: RecordIntegrity) -> Outcome:
    store = store_at(executor.ctx.cluster, action.location)
    manifest = store.read_manifest(action.backup)
    assert manifest is not None
    manifest.verification["integrity"] = f"FAILED: {action.failure}" if action.failure else "ok"
    manifest.verification["checked"] = action.checked
    store.write_manifest(manifest)
    if action.failure:
        raise VerifyFailed(action.failure)
    return Outcome(())


@handles(TestRestore)
def test_restore(executor: Executor, action: TestRestore) -> Outcome:
    ctx = executor.ctx
    store = store_at(ctx.cluster, action.location)
    manifest = store.read_manifest(action.backup)
    assert manifest is not None
    connection = executor.transport[action.host]
    tools = detect(connection)
    tag = secrets.token_hex(4)
    work = f"{ETCD_VERIFY_DIR}/{tag}"
    unit = f"k8sboot-etcd-verify-{tag}"
    result: dict[str, Any] = {"time": now().isoformat(), "host": action.host}
    try:
        upload_plain(executor, connection, store, manifest, f"{work}/snapshot.db")
        offline = EtcdCtl(connection, NO_TLS, [], tools)
        executor.progress(action.host, "snapshot status")
        check_status(offline.snapshot_status(f"{work}/snapshot.db"), manifest, action.host)
        client_url, peer_url = f"unix://{_CLIENT_SOCKET}", f"unix://{_PEER_SOCKET}"
        endpoint = f"unix://{work}/{_CLIENT_SOCKET}"  # etcdctl runs in another directory
        executor.progress(action.host, "restore into a scratch directory")
        offline.snapshot_restore(
            f"{work}/snapshot.db",
            f"{work}/data",
            "verify",
            f"verify={peer_url}",
            f"k8sboot-verify-{tag}",
            peer_url,
        )
        binary = _etcd_binary(connection, tools, work)
        executor.progress(action.host, "start a throw-away etcd on a private unix socket")
        connection.run(
            f"systemd-run --quiet --collect --unit={unit} -p Type=notify -p TimeoutStartSec=300 "
            f"-p WorkingDirectory={work} -p UMask=0077 "
            f"{binary} --name verify --data-dir {work}/data "
            f"--listen-client-urls {client_url} --advertise-client-urls {client_url} "
            f"--listen-peer-urls {peer_url} --initial-advertise-peer-urls {peer_url} "
            f"--initial-cluster verify={peer_url} --quota-backend-bytes {8 * 2**30}",
            timeout=330,
            shown=f"systemd-run {unit}",
        )
        live = EtcdCtl(connection, NO_TLS, [endpoint], tools)
        status = live.status([endpoint])
        revision = status[0].revision if status else 0
        keys = live.count_keys(manifest.revision)
        hash_kv = live.hash_kv(endpoint, manifest.revision)
        result |= {"revision": revision, "keys": keys, "hash_kv": hash_kv}
        problems = []
        if revision != served_revision(manifest.revision):
            problems.append(f"revision {revision}, manifest {manifest.revision}")
        if manifest.keys is not None and keys != manifest.keys:
            problems.append(f"{keys} keys, manifest {manifest.keys}")
        if manifest.hash_kv is not None and hash_kv != manifest.hash_kv:
            problems.append(f"KV hash {hash_kv}, manifest {manifest.hash_kv}")
        if problems:
            raise VerifyFailed(
                f"backup {manifest.name}: the restored data differs: " + "; ".join(problems)
            )
        result["ok"] = True
    except MachineError as error:
        result |= {"ok": False, "error": str(error)}
        raise
    finally:
        connection.run(
            f"systemctl stop {unit} 2>/dev/null; rm -rf {shlex.quote(work)}",
            check=False,
            timeout=120,
        )
        manifest.verification["test_restore"] = result
        store.write_manifest(manifest)
    ctx.notes.append(
        f"backup {manifest.name} verified: restored and served by a throw-away etcd on "
        f"{action.host}: revision {result['revision']}, {result['keys']} keys, KV hash "
        f"{result['hash_kv']} as recorded"
    )
    return Outcome(())


def _etcd_binary(connection: Connection, tools: EtcdTools, work: str) -> str:
    """etcd's server binary: on the host's PATH, else a copy of the running member's
    (kubeadm runs etcd from an image; its binary is static)."""
    if tools.etcd:
        return tools.etcd
    copy = f"{work}/etcd"
    result = connection.run(
        f"pid=$(pgrep -xo etcd) && cp /proc/$pid/exe {copy} && chmod 700 {copy}",
        check=False,
        timeout=60,
    )
    if not result.ok:
        raise MachineError(
            f"{connection.name}: no etcd binary to test-restore with (none on PATH, no running "
            "etcd to borrow one from)"
        )
    return copy


# -- pulling scheduled snapshots ----------------------------------------------------------


@handles(PullSnapshots)
def pull(executor: Executor, action: PullSnapshots) -> Outcome:
    ctx = executor.ctx
    cluster = ctx.cluster
    store = open_store(cluster)
    key = backup_key(cluster, store)
    ctl = ctl_for(executor, action.host, [])
    connection = ctl.connection
    names = []
    refused = []
    for remote in action.files:
        name = pulled_name(remote)
        executor.progress(action.host, f"pull {name}")
        file_name = f"{name}.db.enc" if key else f"{name}.db"
        try:
            with listed_or_removed(store, file_name):
                if remote.endswith(SEALED_SUFFIX):
                    found = _fetch_sealed(connection, remote, store, file_name, key)
                else:
                    found = _check_and_fetch(executor, ctl, remote, store, file_name, key, None)
                mtime = connection.run(
                    f"stat -c %Y {shlex.quote(remote)}", timeout=30
                ).stdout.strip()
                created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(int(mtime)))
                status: SnapshotStatus = found["status"]
                manifest = Manifest(
                    name=name,
                    cluster=cluster.name,
                    created=created,
                    origin=f"scheduled on {action.host}",
                    kubernetes_version=cluster.kubernetes.version,
                    etcd_version="",
                    source={"host": action.host, "member": "", "endpoint": "", "file": remote},
                    members=[],
                    revision=status.revision,
                    hash=status.hash,
                    total_keys=status.total_keys,
                    total_size=status.total_size,
                    keys=None,
                    hash_kv=None,
                    snapshot={"size": found["size"], "sha256": found["sha256"]},
                    file={
                        "name": file_name,
                        "size": found["stored"],
                        "sha256": found["file_sha256"],
                    },
                    encryption={"algorithm": ALGORITHM, "key_id": key.id} if key else None,
                    verification={"integrity": "ok", "checked": now().isoformat()},
                )
                seal(manifest, key)
                store.write_manifest(manifest)
        except (Undecryptable, VerifyFailed) as error:  # the others may still be good
            refused.append(str(error))
            continue
        names.append(name)
    if names:
        ctx.notes.append(f"pulled from {action.host}: {', '.join(names)}")
    if refused:
        raise MachineError("not pulled: " + "; ".join(refused))
    return Outcome(())


def _fetch_sealed(
    connection: Connection, remote: str, store: Store, file_name: str, key: Key | None
) -> dict[str, Any]:
    """Copy a snapshot the schedule encrypted with age (see etcd/scheduled.py) into the
    store: decrypted with the identity derived from `key`, checked against etcd's checksum
    at its end and the sha256 the host recorded beside it, and stored as `_check_and_fetch`
    stores a plain one. The host never sees the identity, so `snapshot status` is the one
    the host's script read before it encrypted the snapshot."""
    host = connection.name
    if key is None:
        raise Undecryptable(
            f"{host}: {remote} is encrypted (age); set backup.encryptionKeyFile to the backup "
            "key it was encrypted for"
        )
    beside = status_path(remote)
    read = connection.run(f"cat {shlex.quote(beside)}", check=False, timeout=60)
    try:
        status, plain_sha256 = parse_status_file(read.stdout if read.ok else "")
    except ValueError as error:
        raise VerifyFailed(
            f"{host}: {beside} is missing or not what k8sboot's snapshot script writes ({error})"
        ) from None
    started = time.monotonic()
    with tempfile.TemporaryFile() as sealed:
        connection.run(
            f"cat {shlex.quote(remote)}",
            stdout_to=sealed,  # type: ignore[arg-type]
            timeout=3700,
            shown=f"copy {remote}",
        )
        sealed.seek(0)
        with store.writer(file_name) as out:
            sink = SnapshotSink(out, key)
            try:
                decrypt(sealed, sink, key)
            except Undecryptable as error:
                raise Undecryptable(
                    f"{host}: {remote} does not decrypt with the age identity derived from "
                    f"backup.encryptionKeyFile (key {key.id}): {error}"
                ) from None
            sink.close()
            _verify_sink(sink, remote, host)
            if sink.plain_sha.hexdigest() != plain_sha256:
                raise VerifyFailed(
                    f"{host}: {remote} decrypts to another snapshot than the one {beside} "
                    "describes (sha256 differs)"
                )
    if status.total_size <= 0:
        raise VerifyFailed(f"{host}: snapshot status reads an empty snapshot in {beside}")
    return {
        "status": status,
        "size": sink.size,
        "sha256": sink.plain_sha.hexdigest(),
        "stored": sink.stored,
        "file_sha256": sink.file_sha.hexdigest(),
        "fetched": time.monotonic() - started,
    }
