"""How a snapshot is checked: its integrity and authenticity here, its status (hash,
revision, keys) where it is restored."""

from __future__ import annotations

import shlex

from k8sboot.errors import MachineError
from k8sboot.etcd.archive import (
    CorruptBackup,
    Key,
    PlainReader,
    backup_key,
    check_file,
)
from k8sboot.etcd.authenticity import why_untrusted
from k8sboot.etcd.catalogue import (
    Manifest,
    Store,
)
from k8sboot.etcd.client import SnapshotStatus
from k8sboot.executor import Executor
from k8sboot.spec import Cluster
from k8sboot.transport import Connection


class VerifyFailed(MachineError):
    """A backup is not what its manifest says."""


class Unauthenticated(VerifyFailed):
    """A manifest the configured key does not authenticate. `etcd list` finds it again
    from the key each time: nothing is recorded in the manifest itself."""


def local_check(store: Store, manifest: Manifest, cluster: Cluster) -> None:
    """The backup's manifest authenticated (check_authentic), then the stored file against
    it: size, sha256, and (decrypted) the snapshot's own checksum and sha256. Raises
    VerifyFailed."""
    key = check_authentic(store, manifest, cluster)
    name = manifest.file["name"]
    size = store.file_size(name)
    if size is None:
        raise VerifyFailed(f"backup {manifest.name}: {name} is missing from {store.location}")
    if size != manifest.file["size"]:
        raise VerifyFailed(
            f"backup {manifest.name} is corrupt: {name} has {size} bytes, its manifest says "
            f"{manifest.file['size']} (truncated or changed)"
        )
    with store.local_copy(name) as path:
        try:
            found = check_file(path, key, encrypted=manifest.encryption is not None)
        except CorruptBackup as error:
            raise VerifyFailed(
                f"backup {manifest.name} is corrupt or unreadable: {error}"
            ) from None
    if found.file_sha256 != manifest.file["sha256"]:
        raise VerifyFailed(
            f"backup {manifest.name} is corrupt: the sha256 of {name} differs from its manifest"
        )
    if not found.trailer_ok or found.sha256 != manifest.snapshot["sha256"]:
        raise VerifyFailed(
            f"backup {manifest.name} is corrupt: the snapshot fails etcd's own checksum"
        )


def check_authentic(store: Store, manifest: Manifest, cluster: Cluster) -> Key | None:
    """The configured backup key, once it has authenticated the manifest (authenticity.py):
    with a key configured or the manifest saying encrypted, only an encrypted backup whose
    manifest MAC matches passes. Raises Unauthenticated, or MachineError when the
    configuration lacks the backup's key (not the backup's fault: nothing is recorded)."""
    key = backup_key(cluster, store)
    if manifest.encryption:
        wanted = manifest.encryption.get("key_id", "?")
        if key is None:
            raise MachineError(
                f"backup {manifest.name} is encrypted (key {wanted}); set "
                "backup.encryptionKeyFile to its key"
            )
        if key.id != wanted:
            raise MachineError(
                f"backup {manifest.name} was encrypted with another key ({wanted}); "
                f"backup.encryptionKeyFile is key {key.id}"
            )
    untrusted = why_untrusted(manifest, key)
    if untrusted:
        raise Unauthenticated(f"backup {manifest.name} {untrusted}")
    return key


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


def served_revision(snapshot_revision: int) -> int:
    """The revision a member restored from a snapshot serves. `snapshot status` reads the
    revision of the snapshot's last key, 0 when it holds none (etcdutl/snapshot/
    v3_snapshot.go Status, etcd v3.5.16; clientv3/snapshot in v3.4); a member's store
    starts at revision 1 and only keys move it on (server/mvcc/kvstore.go NewStore and
    restore)."""
    return max(snapshot_revision, 1)
