"""The backup catalogue: manifests, names, retention tiers, finding a backup, states."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from k8sboot.errors import MachineError, UserError
from k8sboot.etcd.archive import create_key_file
from k8sboot.etcd.catalogue import (
    LocalStore,
    Manifest,
    backup_name,
    find,
    keep,
    names_taken,
    prune,
    state,
)
from k8sboot.etcd.checks import VerifyFailed
from k8sboot.etcd.verify import EtcdVerify
from k8sboot.executor import Executor
from k8sboot.spec.model import Retention

from .builders import START, manifest, stored

NO_KEY = SimpleNamespace(backup=SimpleNamespace(encryption_key_file=None))  # a cluster


def every(hours: int, step: timedelta = timedelta(hours=1)) -> list[Manifest]:
    return [manifest(f"b{i:04d}", START + i * step) for i in range(hours)]


def test_manifest_round_trips_through_json() -> None:
    one = manifest("lab-1", START)
    again = Manifest.from_json(one.to_json(), "x")
    assert again == one and again.members[0].id == "6d26a04f504b92d5"
    with pytest.raises(UserError, match="not a k8sboot backup manifest"):
        Manifest.from_json(b"{}", "x.json")


def test_names_are_unique_and_sortable() -> None:
    first = backup_name("lab", START, [])
    assert first == "lab-20250303T003000Z"
    assert backup_name("lab", START, [first]) == f"{first}-2"


def test_last_n_only() -> None:
    backups = every(10)
    assert keep(backups, Retention(last=3, hourly=0, daily=0, weekly=0)) == {
        "b0009",
        "b0008",
        "b0007",
    }


def test_hourly_keeps_the_newest_backup_of_each_recent_hour() -> None:
    backups = every(12, timedelta(minutes=20))  # 00:30, 00:50, ... 04:10
    kept = keep(backups, Retention(last=1, hourly=3, daily=0, weekly=0))
    # the newest of hours 04, 03 and 02 (03:50 and 02:50); hours 01 and 00 are older
    assert kept == {"b0011", "b0010", "b0007"}


def test_daily_and_weekly_tiers() -> None:
    backups = every(60, timedelta(hours=12))  # 30 days, two a day
    kept = keep(backups, Retention(last=1, hourly=0, daily=3, weekly=3))
    days = {backups[i].name for i in (59, 57, 55)}  # newest of each of the last 3 days
    # the newest of ISO weeks 14 (Tuesday 1 April), 13 (Sunday 30 March) and 12 (23 March)
    weeks = {"b0059", "b0055", "b0041"}
    assert kept == days | weeks
    assert [datetime.fromisoformat(backups[i].created).isocalendar()[1] for i in (59, 55, 41)] == [
        14,
        13,
        12,
    ]


def test_prune_deletes_files_and_manifests_of_this_cluster_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "backups").ensure()
    for item in [*every(5), manifest("other", START, cluster="prod")]:
        (store.directory / item.file["name"]).write_bytes(b"x")
        store.write_manifest(item)
    gone = prune(store, "lab", Retention(last=2, hourly=0, daily=0, weekly=0))
    assert gone == (["b0000", "b0001", "b0002"], [])
    left = sorted(p.name for p in store.directory.iterdir())
    assert left == ["b0003.db", "b0003.json", "b0004.db", "b0004.json", "other.db", "other.json"]
    assert (store.directory / "b0004.json").stat().st_mode & 0o777 == 0o600
    assert store.directory.stat().st_mode & 0o777 == 0o700


def test_writer_is_private_and_atomic(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "b")
    with store.writer("x.db") as out:
        out.write(b"data")
        assert not (store.directory / "x.db").exists()
    assert (store.directory / "x.db").stat().st_mode & 0o777 == 0o600
    with pytest.raises(RuntimeError), store.writer("y.db") as out:
        out.write(b"half")
        raise RuntimeError
    assert sorted(p.name for p in store.directory.iterdir()) == ["x.db"]


def test_find_by_name_file_or_latest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path).ensure()
    for item in every(3):
        store.write_manifest(item)
    assert find(store, "latest", "lab")[1].name == "b0002"
    assert find(store, "b0001", "lab")[1].name == "b0001"
    assert find(store, str(tmp_path / "b0000.db"), "lab")[1].name == "b0000"
    assert find(store, "b0000.json", "lab")[1].name == "b0000"
    with pytest.raises(UserError, match="no backup"):
        find(store, "nope", "lab")
    with pytest.raises(UserError, match="no backups of prod"):
        find(store, "latest", "prod")


def test_state_shows_missing_and_truncated_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path).ensure()
    item = manifest("b", START)
    assert state(item, store) == "MISSING"
    (tmp_path / "b.db").write_bytes(b"x" * 10)
    assert state(item, store).startswith("CORRUPT")
    (tmp_path / "b.db").write_bytes(b"x" * 4128)
    item.verification["integrity"] = "ok"
    assert state(item, store) == "checked"
    item.verification["test_restore"] = {"ok": True}
    assert state(item, store) == "test-restored"


def tampered_catalogue(tmp_path: Path, name: str, file_name: str) -> LocalStore:
    """A catalogue of a good backup and an older one whose manifest (changed by hand, or
    by someone who could write the catalogue) has the name or file name given; files
    outside it: outside.txt and outside.json beside it."""
    for outside in ("outside.txt", "outside.json"):
        (tmp_path / outside).write_text("not k8sboot's\n")
    store = LocalStore(tmp_path / "backups").ensure()
    good = manifest("lab-2", START + timedelta(hours=1))
    store.write_manifest(good)
    (store.directory / "lab-2.db").write_bytes(b"x" * good.file["size"])
    changed = manifest("lab-1", START)
    changed.name, changed.file["name"] = name, file_name
    (store.directory / "lab-1.json").write_bytes(changed.to_json())
    return store


def untouched(tmp_path: Path) -> bool:
    return all(
        (tmp_path / outside).read_text() == "not k8sboot's\n"
        for outside in ("outside.txt", "outside.json")
    )


TAMPERED = [
    ("lab-1", "../outside.txt"),
    ("lab-1", "{tmp}/outside.txt"),
    ("../outside", "lab-1.db"),
    ("{tmp}/outside", "lab-1.db"),
]


@pytest.mark.parametrize(("name", "file_name"), TAMPERED)
def test_a_manifest_naming_files_outside_the_catalogue_is_refused(
    tmp_path: Path, name: str, file_name: str
) -> None:
    name, file_name = name.format(tmp=tmp_path), file_name.format(tmp=tmp_path)
    store = tampered_catalogue(tmp_path, name, file_name)
    # Skipped and reported, not acted on: retention keeps one, of the manifests it can trust.
    assert prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0)) == ([], [])
    (refused,) = store.unreadable.values()
    assert list(store.unreadable) == ["lab-1.json"]
    assert refused.startswith(f"{store.directory / 'lab-1.json'}: refusing")
    assert "\n" not in refused
    assert find(store, "latest", "lab")[1].name == "lab-2"
    with pytest.raises(UserError, match="refusing"):
        find(store, "lab-1", "lab")
    assert untouched(tmp_path)
    assert sorted(p.name for p in store.directory.iterdir()) == [
        "lab-1.json",
        "lab-2.db",
        "lab-2.json",
    ]


def test_a_link_out_of_the_catalogue_is_neither_read_nor_followed(tmp_path: Path) -> None:
    store = tampered_catalogue(tmp_path, "lab-1", "lab-1.db")
    (store.directory / "lab-1.db").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(UserError, match="link out of the catalogue"):
        store.file_size("lab-1.db")
    gone, problems = prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0))
    assert gone == [] and len(problems) == 1
    assert problems[0].startswith("lab-1 not deleted: ")
    assert "link out of the catalogue" in problems[0]
    assert untouched(tmp_path) and (store.directory / "lab-1.db").is_symlink()
    assert (store.directory / "lab-1.json").exists()  # still listed: MISSING is not the truth


def test_a_backup_that_failed_verify_is_listed_as_failed_and_never_latest(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path).ensure()
    older, newer = every(2)
    stored(store, older)
    newer.verification["test_restore"] = {"ok": True}  # an earlier verify passed
    stored(store, newer, b"y" * newer.file["size"])  # the right size, other bytes
    cluster = SimpleNamespace(
        backup=SimpleNamespace(encryption_key_file=None, directory=store.directory)
    )
    ctx = SimpleNamespace(cluster=cluster)
    (record,) = EtcdVerify(store, newer).plan(ctx)  # type: ignore[arg-type]
    assert "test_restore" in store.read_manifest("b0001").verification  # type: ignore[union-attr]
    assert "integrity" not in store.read_manifest("b0001").verification, "planning records nothing"  # type: ignore[union-attr]
    with pytest.raises(VerifyFailed, match="sha256"):
        Executor(ctx, {}).execute(record)  # type: ignore[arg-type]
    recorded = store.read_manifest("b0001")
    assert recorded is not None
    assert state(recorded, store).startswith("FAILED: backup b0001 is corrupt: the sha256")
    assert find(store, "latest", "lab")[1].name == "b0000"
    stored(store, older, b"z")  # then the other fails too, by its test restore
    older.verification["test_restore"] = {"ok": False, "error": "KV hash 1, manifest 456"}
    store.write_manifest(older)
    assert state(older, store).startswith("CORRUPT")
    (store.directory / "b0000.db").write_bytes(b"x" * older.file["size"])
    assert state(older, store) == "FAILED test restore: KV hash 1, manifest 456"
    with pytest.raises(UserError, match=r"no backups of lab .* did not fail `etcd verify`"):
        find(store, "latest", "lab")


def test_a_verify_with_the_wrong_key_configured_does_not_mark_the_backup_failed(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "backups").ensure()
    item = manifest("b0000", START)
    item.encryption = {"algorithm": "AES-256-GCM", "key_id": "0123456789abcdef"}
    stored(store, item)
    other = create_key_file(tmp_path / "other.key")
    for configured, said in ((None, "set backup.encryptionKeyFile"), (other, "another key")):
        key_file = tmp_path / "other.key" if configured else None
        cluster = SimpleNamespace(backup=SimpleNamespace(encryption_key_file=key_file))
        with pytest.raises(MachineError, match=said) as raised:
            EtcdVerify(store, item).plan(SimpleNamespace(cluster=cluster))  # type: ignore[arg-type]
        assert not isinstance(raised.value, VerifyFailed)
        recorded = store.read_manifest("b0000")
        assert recorded is not None and not state(recorded, store).startswith("FAILED")


def test_an_unreadable_or_foreign_manifest_is_skipped_and_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path).ensure()
    for item in every(3):
        stored(store, item)
    foreign = {
        "notes.json": b"not json at all",
        "list.json": b"[1, 2]",
        "other.json": b'{"name": "other", "tool": "something else"}',
        "b0009.json": manifest("b0009", START).to_json().replace(b"+00:00", b""),  # naive
    }
    for name, data in foreign.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "dir.json").mkdir()
    assert [m.name for m in store.manifests()] == ["b0000", "b0001", "b0002"]
    assert sorted(store.unreadable) == sorted([*foreign, "dir.json"])
    for name, why in store.unreadable.items():
        assert why.startswith(f"{tmp_path / name}: ") and "\n" not in why
    assert names_taken(store) >= {"b0009", "notes", "b0002"}
    assert find(store, "latest", "lab")[1].name == "b0002"
    gone, problems = prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0))
    assert (gone, problems) == (["b0000", "b0001"], [])
    assert all((tmp_path / name).exists() for name in foreign)  # reported, never deleted


def old(path: Path, seconds: float = 3600) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_prune_removes_half_written_files_no_run_is_writing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path).ensure()
    for item in every(2):
        stored(store, item)
    killed = tmp_path / ".b0005.db.part"  # a run killed while writing it
    killed.write_bytes(b"a plain snapshot")
    old(killed)
    fresh = tmp_path / ".b0006.db.part"  # just created by a run that has not locked it yet
    fresh.write_bytes(b"")
    with store.writer("b0007.db") as out:  # another run, still writing (and slow)
        out.write(b"busy")
        old(tmp_path / ".b0007.db.part")
        prune(store, "lab", Retention(last=5, hourly=0, daily=0, weekly=0))
        assert not killed.exists() and fresh.exists()
        assert (tmp_path / ".b0007.db.part").exists()
    assert (tmp_path / "b0007.db").read_bytes() == b"busy"


def test_manifests_and_keys_are_on_disk_before_they_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: set[int] = set()
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = LocalStore(tmp_path / "backups").ensure()
    store.write_manifest(manifest("b0000", START))
    create_key_file(tmp_path / "keys" / "backup.key")
    with store.writer("b0000.db") as out:
        out.write(b"data")
    for path in ("backups/b0000.json", "backups", "keys/backup.key", "keys", "backups/b0000.db"):
        assert (tmp_path / path).stat().st_ino in synced, path


def test_a_pre_restore_snapshot_is_never_latest_nor_takes_a_backups_place(tmp_path: Path) -> None:
    """Issue 16: a pre-restore snapshot (of an empty cluster, in the report) became `latest`,
    and with `last: 3` the next backup pruned the good one while keeping the empty one."""
    store = LocalStore(tmp_path).ensure()
    backups = every(5)
    for item in backups[3:]:
        item.origin = "pre-restore"
    for item in backups:
        stored(store, item)
    assert find(store, "latest", "lab")[1].name == "b0002"
    last_three = Retention(last=3, hourly=0, daily=0, weekly=0)
    # Every backup kept; of the pre-restore ones, the newest.
    assert keep(backups, last_three) == {"b0000", "b0001", "b0002", "b0004"}
    # One held by a restore not yet confirmed stays too.
    assert keep(backups, last_three, held=["b0003"]) == {
        "b0000",
        "b0001",
        "b0002",
        "b0003",
        "b0004",
    }
    gone, problems = prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0), ["b0003"])
    assert sorted(gone) == ["b0000", "b0001"] and problems == []
