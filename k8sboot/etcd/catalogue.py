"""The backup catalogue: one manifest (JSON) beside each backup file, in a local directory
(0700, files 0600) or an S3-compatible bucket (k8sboot/etcd/s3.py), and the retention
that prunes it.

A backup `NAME` is `NAME.db` (a plain etcd snapshot) or `NAME.db.enc` (encrypted, see
archive.py) with `NAME.json` beside it. The manifest says what the snapshot holds (cluster,
versions, members, revision, hash, keys), how to check the file (sizes, sha256) and how it
was verified.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from k8sboot.errors import UserError
from k8sboot.etcd.archive import inside
from k8sboot.spec.model import Retention
from k8sboot.state import private_dir, write_private

FORMAT = 1


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
    origin: str  # "backup", "pre-restore", "scheduled on cp1"
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
    verification: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT

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
            return manifest
        except (ValueError, TypeError, KeyError) as exc:
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

    def manifests(self) -> list[Manifest]: ...
    def read_manifest(self, name: str) -> Manifest | None: ...
    def write_manifest(self, manifest: Manifest) -> None: ...
    def file_size(self, file_name: str) -> int | None: ...
    @contextmanager
    def writer(self, file_name: str) -> Iterator[BinaryIO]: ...
    @contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]: ...
    def delete(self, manifest: Manifest) -> None: ...


class LocalStore:
    """A directory on the operator's machine (0700), files 0600."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.location = str(directory)

    def ensure(self) -> LocalStore:
        private_dir(self.directory)
        return self

    def manifests(self) -> list[Manifest]:
        if not self.directory.is_dir():
            return []
        found = []
        for listed in sorted(self.directory.glob("*.json")):
            path = self.path(listed.name)
            found.append(Manifest.from_json(path.read_bytes(), str(path)))
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
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    @contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]:
        yield self.path(file_name)

    def delete(self, manifest: Manifest) -> None:
        self.path(manifest.file["name"]).unlink(missing_ok=True)
        self.path(f"{manifest.name}.json").unlink(missing_ok=True)


def open_store(cluster: Any) -> Store:
    """The catalogue the cluster file names: backup.s3, else backup.directory, else
    <stateDir>/backups."""
    backup = cluster.backup
    if getattr(backup, "s3", None) is not None:
        from k8sboot.etcd.s3 import S3Store  # an optional extra: boto3

        return S3Store(backup.s3, cluster.state_dir)
    directory = backup.directory or (cluster.state_dir / "backups")
    return LocalStore(Path(directory))


def store_at(cluster: Any, location: str) -> Store:
    """The store a plan named by its location: the cluster's catalogue, or the directory
    of a backup given by path."""
    store = open_store(cluster)
    return store if store.location == location else LocalStore(Path(location))


def locate(cluster: Any, reference: str) -> tuple[Store, Manifest]:
    """A backup by name, by the name or path of its file or manifest, or `latest` (this
    cluster's newest). A path outside the catalogue needs its manifest beside it."""
    path = Path(reference).expanduser()
    if path.is_file():
        return find(LocalStore(path.resolve().parent), path.name, cluster.name)
    store = open_store(cluster)
    return find(store, reference, cluster.name)


def find(store: Store, reference: str, cluster: str) -> tuple[Store, Manifest]:
    if reference == "latest":
        mine = [m for m in store.manifests() if m.cluster == cluster]
        if not mine:
            raise UserError(f"no backups of {cluster} in {store.location}")
        return store, mine[-1]
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


def keep(manifests: list[Manifest], retention: Retention) -> set[str]:
    """Names to keep: the `last` newest, plus the newest backup of each of the most recent
    `hourly` hours, `daily` days and `weekly` ISO weeks that have backups."""
    ordered = sorted(manifests, key=lambda m: (m.created, m.name), reverse=True)
    kept = {m.name for m in ordered[: retention.last]}
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


def prune(store: Store, cluster: str, retention: Retention) -> list[str]:
    """Delete this cluster's backups that retention does not keep; the names deleted."""
    mine = [m for m in store.manifests() if m.cluster == cluster]
    kept = keep(mine, retention)
    gone = []
    for manifest in mine:
        if manifest.name not in kept:
            store.delete(manifest)
            gone.append(manifest.name)
    return gone


# -- describing ---------------------------------------------------------------------------


def state(manifest: Manifest, store: Store) -> str:
    """The verified state `etcd list` shows, from the manifest and a cheap file check."""
    size = store.file_size(manifest.file["name"])
    if size is None:
        return "MISSING"
    if size != manifest.file["size"]:
        return f"CORRUPT (size {size}, manifest says {manifest.file['size']})"
    test = manifest.verification.get("test_restore")
    if test:
        return "test-restored" if test.get("ok") else f"FAILED test restore: {test.get('error')}"
    return "checked" if manifest.verification.get("integrity") == "ok" else "unchecked"


def age(manifest: Manifest, when: datetime | None = None) -> str:
    delta = (when or now()) - manifest.time
    if delta < timedelta(hours=1):
        return f"{int(delta.total_seconds() // 60)}m"
    if delta < timedelta(days=2):
        return f"{int(delta.total_seconds() // 3600)}h"
    return f"{delta.days}d"
