"""Backup files on the operator's machine: integrity of etcd snapshots, and encryption at
rest with AES-256-GCM (the `cryptography` library), streamed in chunks so that a 1 GB
snapshot never has to fit in memory.

An etcd snapshot is a bbolt database (a whole number of pages) followed by the 32-byte
sha256 of everything before it; `snapshot restore` refuses a file whose hash is wrong.

Encrypted file format (all integers big-endian):

    header  = b"K8SBETCD" | version (1 byte, 1) | chunk size (4 bytes) | salt (32 bytes)
    records = one per chunk of plaintext: AES-256-GCM(chunk) with its 16-byte tag

Each file gets its own key, HKDF-SHA256(key file's 32 bytes, salt); chunk i is sealed
with the 96-bit nonce i (11 bytes) | final flag (1 byte) and the header as associated
data. Flipping, removing, reordering or appending anything fails authentication: a
changed byte breaks its chunk's tag, a truncated file lacks its final chunk, data after
the final chunk is refused. docs/backup-format.md describes it completely.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from k8sboot.errors import UserError
from k8sboot.state import create_secret_file

MAGIC = b"K8SBETCD"
VERSION = 1
CHUNK = 1 << 20
SALT = 32
HEADER = len(MAGIC) + 1 + 4 + SALT
TAG = 16
KEY_BYTES = 32
TRAILER = 32  # the sha256 etcd appends to a snapshot
ALGORITHM = "AES-256-GCM"


class CorruptBackup(Exception):
    """The file is not what its manifest or its own checksum says."""


class WrongKey(CorruptBackup):
    """Authentication failed on the first chunk: another key, or a damaged header."""


# -- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    material: bytes

    def __repr__(self) -> str:
        return "Key(<secret>)"

    @property
    def id(self) -> str:
        """A public name for the key (not derived reversibly from it)."""
        return hashlib.sha256(b"k8sboot etcd backup key id\0" + self.material).hexdigest()[:16]


def create_key_file(path: Path) -> Key:
    """Write a new random key, base64 on one line, mode 0600; never overwrite one."""
    key = Key(secrets.token_bytes(KEY_BYTES))
    create_secret_file(path, base64.b64encode(key.material).decode() + "\n")
    return key


def backup_key(cluster: Any, store: object | None = None) -> Key | None:
    """The key the cluster file configures (backup.encryptionKeyFile), if any; refused
    when kept inside `store`'s local directory."""
    path = cluster.backup.encryption_key_file
    if path is None:
        return None
    local = getattr(store, "directory", None)
    return load_key(path, local)


def load_key(path: Path, backups: Path | None = None) -> Key:
    """The key in `path`; refuses one that others can read, or one kept beside the
    backups it protects."""
    try:
        info = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"backup.encryptionKeyFile: cannot read {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"backup.encryptionKeyFile: {path} is readable by others "
            f"(mode {info.st_mode & 0o777:o}); chmod 600 it"
        )
    if backups is not None and inside(path, backups):
        raise UserError(
            f"backup.encryptionKeyFile: {path} is inside the backup directory {backups}; keep "
            "the key elsewhere, or whoever gets the backups gets the key too"
        )
    try:
        material = base64.b64decode(text, validate=True)
    except ValueError:
        material = b""
    if len(material) != KEY_BYTES:
        raise UserError(
            f"backup.encryptionKeyFile: {path} does not hold a key "
            "(base64 of 32 bytes; `k8sboot etcd keygen` makes one)"
        )
    return Key(material)


def inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def _file_key(key: Key, salt: bytes) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"k8sboot etcd backup v1"
    ).derive(key.material)
    return AESGCM(derived)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


# -- writing ------------------------------------------------------------------------------


class SnapshotSink:
    """A writable stream for a snapshot on its way into the catalogue: hashes the plain
    bytes, keeps the last 32 for etcd's checksum, and writes them to `out`, encrypted when
    a key is given. Call close() to finish (the final chunk)."""

    def __init__(self, out: BinaryIO, key: Key | None = None):
        self.out = out
        # One pass of hashing for a plain snapshot: the body's sha256, from which the whole
        # file's follows (its last 32 bytes are kept); a second only for encrypted output.
        self.body_sha = hashlib.sha256()  # of everything but the last 32 bytes
        self._stored_sha = hashlib.sha256() if key is not None else None
        self.size = 0
        self.stored = 0
        self._tail = b""
        self._buffer = bytearray()
        self._index = 0
        self._sealer: AESGCM | None = None
        self._header = b""
        if key is not None:
            salt = secrets.token_bytes(SALT)
            self._header = MAGIC + bytes([VERSION]) + CHUNK.to_bytes(4, "big") + salt
            self._sealer = _file_key(key, salt)
            self._emit(self._header)

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if len(data) >= TRAILER:
            view = memoryview(data)
            self.body_sha.update(self._tail)
            self.body_sha.update(view[:-TRAILER])
            self._tail = bytes(view[-TRAILER:])
        else:
            joined = self._tail + data
            cut = max(0, len(joined) - TRAILER)
            self.body_sha.update(joined[:cut])
            self._tail = joined[cut:]
        if self._sealer is None:
            self._emit(data)
        else:
            self._buffer += data
            while len(self._buffer) > CHUNK:  # keep at least one byte for the final chunk
                self._seal(bytes(self._buffer[:CHUNK]), final=False)
                del self._buffer[:CHUNK]
        return len(data)

    @property
    def plain_sha(self):  # hashlib's type is private
        """sha256 of the whole snapshot."""
        whole = self.body_sha.copy()
        whole.update(self._tail)
        return whole

    @property
    def file_sha(self):
        """sha256 of what landed on disk (the snapshot itself unless encrypted)."""
        return self.plain_sha if self._stored_sha is None else self._stored_sha

    def close(self) -> None:
        if self._sealer is not None:
            self._seal(bytes(self._buffer), final=True)
            self._buffer.clear()
        self.out.flush()

    def _seal(self, chunk: bytes, final: bool) -> None:
        assert self._sealer is not None
        self._emit(self._sealer.encrypt(_nonce(self._index, final), chunk, self._header))
        self._index += 1

    def _emit(self, data: bytes) -> None:
        if self._stored_sha is not None:
            self._stored_sha.update(data)
        self.stored += len(data)
        self.out.write(data)

    @property
    def trailer(self) -> bytes:
        """The last 32 bytes: etcd's sha256 of the rest, in a whole snapshot."""
        return self._tail

    @property
    def trailer_ok(self) -> bool:
        return len(self._tail) == TRAILER and self.body_sha.digest() == self._tail


# -- reading ------------------------------------------------------------------------------


def plain_chunks(handle: BinaryIO, key: Key | None, encrypted: bool) -> Iterator[bytes]:
    """The snapshot's bytes, decrypted and authenticated chunk by chunk. Whether the file
    is encrypted is the caller's to say (from the configuration and the authenticated
    manifest), never the file's: anyone can write a file that looks plain."""
    if not encrypted:
        while chunk := handle.read(CHUNK):
            yield chunk
        return
    header = handle.read(HEADER)
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise CorruptBackup("not an encrypted k8sboot backup (bad header)")
    if header[len(MAGIC)] != VERSION:
        raise CorruptBackup(f"encrypted with format version {header[len(MAGIC)]}, not {VERSION}")
    if key is None:
        raise WrongKey("the backup is encrypted; set backup.encryptionKeyFile to its key")
    size = int.from_bytes(header[len(MAGIC) + 1 : len(MAGIC) + 5], "big")
    opener = _file_key(key, header[-SALT:])
    record = size + TAG
    index = 0
    current = handle.read(record)
    while True:
        following = handle.read(record)
        final = not following
        if len(current) < TAG or (not final and len(current) != record):
            raise CorruptBackup("truncated")
        try:
            yield opener.decrypt(_nonce(index, final), current, header)
        except InvalidTag:
            if index == 0:
                raise WrongKey(
                    "authentication failed on the first chunk: another key, or the file is "
                    "damaged or truncated"
                ) from None
            raise CorruptBackup(
                f"chunk {index} fails authentication (changed or truncated)"
            ) from None
        if final:
            return
        index += 1
        current = following


@dataclass(frozen=True)
class FileCheck:
    size: int  # of the plain snapshot
    sha256: str  # of the plain snapshot
    file_sha256: str  # of the stored file
    trailer_ok: bool


def check_file(path: Path, key: Key | None, encrypted: bool) -> FileCheck:
    """Read a stored backup end to end: decrypt and authenticate it if `encrypted`, hash
    it, and check etcd's own checksum at its end."""
    file_sha = hashlib.sha256()
    sink = SnapshotSink(_Discard())
    with path.open("rb") as raw:
        hashed = _Hashing(raw, file_sha)
        for chunk in plain_chunks(hashed, key, encrypted):
            sink.write(chunk)
    sink.close()
    return FileCheck(sink.size, sink.plain_sha.hexdigest(), file_sha.hexdigest(), sink.trailer_ok)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


class _Hashing:
    def __init__(self, handle: BinaryIO, digest: hashlib._Hash):
        self.handle = handle
        self.digest = digest

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


class PlainReader:
    """A file-like reader of a stored backup's plain snapshot (for streaming uploads);
    `file_sha` hashes the stored bytes read so far."""

    def __init__(self, path: Path, key: Key | None, encrypted: bool):
        self._handle = path.open("rb")
        self.file_sha = hashlib.sha256()
        self._chunks = plain_chunks(_Hashing(self._handle, self.file_sha), key, encrypted)
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        if size < 0:
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PlainReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
