"""The backup catalogue: one manifest (JSON) beside each backup file, in a local directory
(0700, files 0600) or an S3-compatible bucket (k8sboot/etcd/s3.py), and the retention
that prunes it.

A backup `NAME` is `NAME.db` (a plain etcd snapshot) or `NAME.db.enc` (encrypted, see
archive.py) with `NAME.json` beside it. The manifest says what the snapshot holds (cluster,
versions, members, revision, hash, keys), how to check the file (sizes, sha256) and how it
was verified; with a backup key, a MAC authenticates it (authenticity.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from k8sboot.errors import MachineError, UserError
from k8sboot.etcd.archive import Key, inside
from k8sboot.etcd.authenticity import why_untrusted
from k8sboot.spec.model import Retention
from k8sboot.state import fsync_dir, private_dir, write_private

FORMAT = 1
# What `etcd list` shows of a backup that cannot be restored as it is (exit 1).
BAD_STATES = ("MISSING", "CORRUPT", "FAILED", "UNKNOWN", "UNAUTHENTICATED")
PRE_RESTORE = "pre-restore"  # the origin of the snapshot a restore takes first
# A leftover file younger than this may belong to a run that has created it and not yet
# locked it (see open_part).
PART_GRACE_SECONDS = 60


@dataclass
class MemberRecord:
    id: str  # hex
    name: str
    peer_urls: list[str]


@dataclass
class Manifest:
    name: str
    cluster: str
    created: str  # ISO 8601, UTC
    origin: str  # "backup", PRE_RESTORE, "scheduled on cp1"
    kubernetes_version: str
    etcd_version: str
    source: dict[str, str]  # host, member (hex), endpoint
    members: list[MemberRecord]
    revision: int
    hash: int  # snapshot status hash
    total_keys: int  # snapshot status totalKey: key revisions in the file
    total_size: int  # snapshot status totalSize
    keys: int | None  # live keys at the revision, counted on the member
    hash_kv: int | None  # endpoint hashkv at the revision, on the member
    snapshot: dict[str, Any]  # size, sha256 of the plain snapshot
    file: dict[str, Any]  # name, size, sha256 of the stored file
    encryption: dict[str, str] | None  # algorithm, key_id
    nodes: list[str] = field(default_factory=list)  # Node objects at backup time
    verification: dict[str, Any] = field(default_factory=dict)  # outside the MAC
    format: int = FORMAT
    mac: str | None = None  # HMAC-SHA256, hex (authenticity.py); None without a key

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            document = json.loads(data)
            document["members"] = [MemberRecord(**m) for m in document.get("members", [])]
            known = {f for f in cls.__dataclass_fields__}
            manifest = cls(**{k: v for k, v in document.items() if k in known})
            plain_name(manifest.name, where)
            plain_name(manifest.file["name"], where)
            if manifest.time.tzinfo is None:
                raise ValueError(f"created {manifest.created!r} has no time zone")
            return manifest
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UserError(f"{where}: not a k8sboot backup manifest ({exc})") from None


def plain_name(name: object, where: str) -> str:
    """`name` if it names a file directly in the catalogue, else a UserError: names come
    from manifests, and a tampered one must not make k8sboot read, write or delete a file
    elsewhere (a path like ../x or /x, or an S3 key outside the prefix)."""
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise UserError(
            f"{where}: refusing the file name {name!r}: not a plain name of a file in the "
            "catalogue (was the manifest changed?)"
        )
    return name


def failure(manifest: Manifest) -> str | None:
    """Why the last `etcd verify` of the backup failed; None when it did not (or never ran).
    A failed check of the file outranks an earlier test restore that passed."""
    integrity = manifest.verification.get("integrity")
    if integrity not in (None, "ok"):
        text = str(integrity)
        return text if text.startswith("FAILED") else f"FAILED: {text}"
    test = manifest.verification.get("test_restore")
    if test and not test.get("ok"):
        return f"FAILED test restore: {test.get('error')}"
    return None


def open_part(path: Path) -> int:
    """A file being written (0600, truncated), locked for as long as the descriptor is
    open, so that sweep_parts leaves it alone while its run lives (another run, another
    cluster sharing the catalogue)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)  # a sweep may have held it; start from nothing again
    except BaseException:
        os.close(fd)
        raise
    return fd


def sweep_parts(directory: Path, pattern: str) -> list[str]:
    """Remove the files matching `pattern` that a killed run left behind: no run holds them
    locked, and they are older than a run needs to create and lock one. The names removed."""
    removed = []
    for path in sorted(directory.glob(pattern)) if directory.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if time.time() - os.fstat(fd).st_mtime > PART_GRACE_SECONDS:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        except OSError:  # locked: a run is writing it
            continue
        finally:
            os.close(fd)
    return removed


@contextmanager
def listed_or_removed(store: Store, file_name: str) -> Iterator[None]:
    """Around writing a backup's file and then its manifest: if anything fails, the file
    goes too. A file without its manifest is never listed nor pruned, and may be a plain
    copy of every Secret."""
    try:
        yield
    except Exception as error:
        try:
            store.remove(file_name)
        except Exception as failed:
            raise MachineError(
                f"{error}; {file_name} could not be removed from {store.location} ({failed}): "
                "delete it by hand"
            ) from None
        raise
    except BaseException:  # interrupted: still try not to leave it behind
        store.remove(file_name)
        raise


def names_taken(store: Store) -> set[str]:
    """The backup names in the catalogue, those of unreadable manifests included: a new
    backup must not take the place of a file someone may still want to look at."""
    listed = {m.name for m in store.manifests()}
    return listed | {name.removesuffix(".json") for name in store.unreadable}


def backup_name(cluster: str, when: datetime, taken: Iterable[str]) -> str:
    base = f"{cluster}-{when.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    name, n = base, 1
    existing = set(taken)
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# -- storage ------------------------------------------------------------------------------


class Store(Protocol):
    """Where backups are kept."""

    location: str
    # The manifests manifests() skipped, by file name (NAME.json): unreadable, not
    # k8sboot's, or naming a file outside the catalogue; with why.
    unreadable: dict[str, str]

    def manifests(self) -> list[Manifest]: ...
    def read_manifest(self, name: str) -> Manifest | None: ...
    def write_manifest(self, manifest: Manifest) -> None: ...
    def file_size(self, file_name: str) -> int | None: ...
    @contextmanager
    def writer(self, file_name: str) -> Iterator[BinaryIO]: ...
    @contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]: ...
    def remove(self, file_name: str) -> None: ...
    def delete(self, manifest: Manifest) -> None: ...
    def sweep(self) -> list[str]: ...


class LocalStore:
    """A directory on the operator's machine (0700), files 0600."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.location = str(directory)
        self.unreadable: dict[str, str] = {}

    def ensure(self) -> LocalStore:
        private_dir(self.directory)
        return self

    def manifests(self) -> list[Manifest]:
        if not self.directory.is_dir():
            return []
        found = []
        for listed in sorted(self.directory.glob("*.json")):
            try:
                path = self.path(listed.name)
                found.append(Manifest.from_json(path.read_bytes(), str(path)))
            except UserError as error:
                self.unreadable[listed.name] = str(error)
            except OSError as error:
                self.unreadable[listed.name] = f"{listed}: cannot read it: {error.strerror}"
        return sorted(found, key=lambda m: (m.created, m.name))

    def read_manifest(self, name: str) -> Manifest | None:
        path = self.path(f"{name}.json")
        return Manifest.from_json(path.read_bytes(), str(path)) if path.exists() else None

    def write_manifest(self, manifest: Manifest) -> None:
        write_private(self.path(f"{manifest.name}.json"), manifest.to_json())

    def file_size(self, file_name: str) -> int | None:
        path = self.path(file_name)
        return path.stat().st_size if path.exists() else None

    def path(self, file_name: str) -> Path:
        """A file of the catalogue, never one elsewhere (see plain_name), nor through a
        symbolic link out of it."""
        path = self.directory / plain_name(file_name, self.location)
        if not inside(path, self.directory):
            raise UserError(f"{path}: refusing a link out of the catalogue {self.location}")
        return path

    @contextmanager
    def writer(self, file_name: str) -> Iterator[BinaryIO]:
        """A new file, 0600 from its first byte, in place only once the block succeeds."""
        self.ensure()
        final = self.path(file_name)
        part = self.directory / f".{file_name}.part"
        fd = open_part(part)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
                os.replace(part, final)  # still locked: no sweep takes it meanwhile
            fsync_dir(self.directory)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    @contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]:
        yield self.path(file_name)

    def remove(self, file_name: str) -> None:
        self.path(file_name).unlink(missing_ok=True)

    def delete(self, manifest: Manifest) -> None:
        # The file first: a manifest outlives its file (MISSING), never the other way round.
        self.remove(manifest.file["name"])
        self.remove(f"{manifest.name}.json")

    def sweep(self) -> list[str]:
        return sweep_parts(self.directory, ".*.part")


def find(store: Store, reference: str, cluster: str) -> tuple[Store, Manifest]:
    if reference == "latest":
        # A pre-restore snapshot is the way back from a restore, not a backup to restore.
        mine = [m for m in store.manifests() if m.cluster == cluster and m.origin != PRE_RESTORE]
        good = [m for m in mine if failure(m) is None]
        if not good:
            failed = f" that did not fail `etcd verify` ({len(mine)} did)" if mine else ""
            raise UserError(f"no backups of {cluster} in {store.location}{failed}")
        return store, good[-1]
    name = Path(reference).name
    for suffix in (".json", ".db.enc", ".db"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    manifest = store.read_manifest(name)
    if manifest is None:
        raise UserError(
            f"no backup {reference!r} in {store.location} (`k8sboot etcd list` shows them; a "
            "snapshot file needs its manifest beside it)"
        )
    return store, manifest


# -- retention ----------------------------------------------------------------------------


def keep(manifests: list[Manifest], retention: Retention, held: Iterable[str] = ()) -> set[str]:
    """Names to keep: the `last` newest, plus the newest backup of each of the most recent
    `hourly` hours, `daily` days and `weekly` ISO weeks that have backups. Pre-restore
    snapshots take no place in those tiers: the newest one is kept, and those `held` (of a
    restore not yet confirmed)."""
    before = sorted(
        (m for m in manifests if m.origin == PRE_RESTORE), key=lambda m: (m.created, m.name)
    )
    kept = {m.name for m in before[-1:]} | {m.name for m in before if m.name in set(held)}
    ordered = sorted(
        (m for m in manifests if m.origin != PRE_RESTORE),
        key=lambda m: (m.created, m.name),
        reverse=True,
    )
    kept |= {m.name for m in ordered[: retention.last]}
    tiers = (
        (retention.hourly, lambda t: t.strftime("%Y-%m-%dT%H")),
        (retention.daily, lambda t: t.strftime("%Y-%m-%d")),
        (retention.weekly, lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    )
    for count, period in tiers:
        seen: list[str] = []
        for manifest in ordered:
            slot = period(manifest.time.astimezone(UTC))
            if slot in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(slot)
            kept.add(manifest.name)
    return kept


def prune(
    store: Store, cluster: str, retention: Retention, held: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """Delete this cluster's backups that retention does not keep, and the files killed
    runs left half written: the names deleted, and why the others could not be."""
    store.sweep()
    mine = [m for m in store.manifests() if m.cluster == cluster]
    kept = keep(mine, retention, held)
    gone, problems = [], []
    for manifest in mine:
        if manifest.name not in kept:
            try:
                store.delete(manifest)
            except (UserError, MachineError) as error:
                problems.append(f"{manifest.name} not deleted: {error}")
                continue
            gone.append(manifest.name)
    return gone, problems


# -- describing ---------------------------------------------------------------------------


def state(manifest: Manifest, store: Store, key: Key | None = None) -> str:
    """The verified state `etcd list` shows, from the manifest (authenticated with `key`,
    the configured backup key) and a cheap file check."""
    untrusted = why_untrusted(manifest, key)
    if untrusted and manifest.encryption is not None:
        return f"UNAUTHENTICATED: {manifest.name} {untrusted}"
    try:
        size = store.file_size(manifest.file["name"])
    except (UserError, MachineError) as error:
        return f"UNKNOWN: {error}"
    if size is None:
        return "MISSING"
    if size != manifest.file["size"]:
        return f"CORRUPT (size {size}, manifest says {manifest.file['size']})"
    failed = failure(manifest)
    if failed:
        return failed
    # Made before the key was set, or put in place of a backup: either way restore refuses
    # it, and a catalogue that predates the key holds such backups until retention prunes
    # them, so they are not listed as faults.
    if untrusted:
        return "plaintext: not authenticated, refused while backup.encryptionKeyFile is set"
    if manifest.verification.get("test_restore"):
        return "test-restored"
    return "checked" if manifest.verification.get("integrity") == "ok" else "unchecked"


def age(manifest: Manifest, when: datetime | None = None) -> str:
    delta = (when or now()) - manifest.time
    if delta < timedelta(hours=1):
        return f"{int(delta.total_seconds() // 60)}m"
    if delta < timedelta(days=2):
        return f"{int(delta.total_seconds() // 3600)}h"
    return f"{delta.days}d"
