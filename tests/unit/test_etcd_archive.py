"""Backup files: etcd's checksum, AES-256-GCM encryption round trips and tamper detection,
key files."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from k8sboot.errors import UserError
from k8sboot.etcd.archive import (
    CHUNK,
    HEADER,
    MAGIC,
    CorruptBackup,
    Key,
    PlainReader,
    SnapshotSink,
    WrongKey,
    check_file,
    create_key_file,
    load_key,
)

KEY = Key(bytes(range(32)))


def snapshot(size: int) -> bytes:
    """Bytes shaped like an etcd snapshot: a body and the sha256 of it at the end."""
    body = os.urandom(size)
    return body + hashlib.sha256(body).digest()


def store(tmp_path: Path, data: bytes, key: Key | None, name: str = "b.db") -> Path:
    path = tmp_path / name
    with path.open("wb") as out:
        sink = SnapshotSink(out, key)
        for offset in range(0, len(data), 70_001):  # writes of any size, like a download
            sink.write(data[offset : offset + 70_001])
        sink.close()
    return path


@pytest.mark.parametrize("size", [0, 1, CHUNK - 32, CHUNK, CHUNK + 1, 2 * CHUNK + 12345])
def test_encryption_round_trip(tmp_path: Path, size: int) -> None:
    data = snapshot(size)
    path = store(tmp_path, data, KEY)
    raw = path.read_bytes()
    assert raw.startswith(MAGIC) and data[:64] not in raw
    with PlainReader(path, KEY, encrypted=True) as reader:
        assert reader.read() == data
    assert reader.file_sha.hexdigest() == hashlib.sha256(raw).hexdigest()
    found = check_file(path, KEY, encrypted=True)
    assert found.trailer_ok and found.size == len(data)
    assert found.sha256 == hashlib.sha256(data).hexdigest()
    assert found.file_sha256 == hashlib.sha256(raw).hexdigest()


def test_plain_files_are_checked_by_etcds_own_checksum(tmp_path: Path) -> None:
    data = snapshot(5000)
    path = store(tmp_path, data, None)
    assert path.read_bytes() == data
    assert check_file(path, None, encrypted=False).trailer_ok
    flipped = bytearray(data)
    flipped[100] ^= 1
    path.write_bytes(bytes(flipped))
    assert not check_file(path, None, encrypted=False).trailer_ok
    path.write_bytes(data[:-10])
    assert not check_file(path, None, encrypted=False).trailer_ok


def _read(path: Path, key: Key | None) -> bytes:
    with PlainReader(path, key, encrypted=True) as reader:
        return reader.read()


@pytest.mark.parametrize(
    "where",
    [
        HEADER + 5,  # first chunk's ciphertext
        HEADER + CHUNK + 16 + 7,  # second chunk
        -3,  # the final chunk's tag
    ],
)
def test_a_flipped_byte_is_detected(tmp_path: Path, where: int) -> None:
    path = store(tmp_path, snapshot(2 * CHUNK + 100), KEY)
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBackup):
        _read(path, KEY)


def test_a_changed_header_fails_like_a_wrong_key(tmp_path: Path) -> None:
    path = store(tmp_path, snapshot(1000), KEY)
    raw = bytearray(path.read_bytes())
    raw[HEADER - 1] ^= 0x80  # the salt
    path.write_bytes(bytes(raw))
    with pytest.raises(WrongKey):
        _read(path, KEY)


@pytest.mark.parametrize("cut", ["record boundary", "mid record", "header"])
def test_truncation_is_detected(tmp_path: Path, cut: str) -> None:
    path = store(tmp_path, snapshot(3 * CHUNK), KEY)
    raw = path.read_bytes()
    length = {
        "record boundary": HEADER + 2 * (CHUNK + 16),
        "mid record": HEADER + CHUNK + 16 + 999,
        "header": HEADER - 3,
    }[cut]
    path.write_bytes(raw[:length])
    with pytest.raises(CorruptBackup):
        _read(path, KEY)


def test_appended_or_reordered_chunks_are_detected(tmp_path: Path) -> None:
    path = store(tmp_path, snapshot(2 * CHUNK + 5), KEY)
    raw = path.read_bytes()
    record = CHUNK + 16
    path.write_bytes(raw + raw[HEADER : HEADER + record])
    with pytest.raises(CorruptBackup):
        _read(path, KEY)
    first, second = raw[HEADER : HEADER + record], raw[HEADER + record : HEADER + 2 * record]
    path.write_bytes(raw[:HEADER] + second + first + raw[HEADER + 2 * record :])
    with pytest.raises(CorruptBackup):
        _read(path, KEY)


def test_an_encrypted_backup_is_unreadable_without_its_key(tmp_path: Path) -> None:
    path = store(tmp_path, snapshot(4000), KEY)
    with pytest.raises(WrongKey, match="encrypted"):
        _read(path, None)
    with pytest.raises(WrongKey, match="another key"):
        _read(path, Key(b"\x01" * 32))


def test_the_same_snapshot_encrypts_differently_each_time(tmp_path: Path) -> None:
    data = snapshot(3000)
    one = store(tmp_path, data, KEY, "one").read_bytes()
    two = store(tmp_path, data, KEY, "two").read_bytes()
    assert one != two  # a fresh salt, so a fresh key, per file


def test_key_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "etcd.key"
    key = create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key(path) == key and len(key.id) == 16 and key.id not in path.read_text()
    with pytest.raises(UserError, match="never overwrites"):
        create_key_file(path)
    assert "secret" in repr(key) and path.read_text().strip() not in repr(key)


def test_unsafe_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    create_key_file(path)
    path.chmod(0o640)
    with pytest.raises(UserError, match="readable by others"):
        load_key(path)
    path.chmod(0o600)
    with pytest.raises(UserError, match="inside the backup directory"):
        load_key(path, backups=tmp_path)
    path.write_text("not a key\n")
    with pytest.raises(UserError, match="does not hold a key"):
        load_key(path)
    with pytest.raises(UserError, match="cannot read"):
        load_key(tmp_path / "missing")


def test_sink_counts_what_it_was_given() -> None:
    out = io.BytesIO()
    sink = SnapshotSink(out)
    sink.write(b"abc")
    assert sink.size == 3


@pytest.mark.parametrize("sizes", [[1] * 40, [31, 1, 33], [5000], [10, 20, 30, 4000, 3]])
@pytest.mark.parametrize("key", [None, KEY])
def test_sink_hashes_whatever_the_write_sizes(sizes: list[int], key: Key | None) -> None:
    data = snapshot(sum(sizes) - 32) if sum(sizes) >= 32 else os.urandom(sum(sizes))
    out = io.BytesIO()
    sink = SnapshotSink(out, key)
    offset = 0
    for size in sizes:
        sink.write(data[offset : offset + size])
        offset += size
    sink.close()
    assert sink.plain_sha.hexdigest() == hashlib.sha256(data).hexdigest()
    assert sink.file_sha.hexdigest() == hashlib.sha256(out.getvalue()).hexdigest()
    assert sink.trailer_ok == (len(data) >= 32)
