"""The backup catalogue: manifests, names, retention tiers, finding a backup, states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from k8sboot.errors import UserError
from k8sboot.etcd.catalogue import (
    LocalStore,
    Manifest,
    MemberRecord,
    backup_name,
    find,
    keep,
    prune,
    state,
)
from k8sboot.spec.model import Retention

START = datetime(2025, 3, 3, 0, 30, tzinfo=UTC)  # a Monday


def manifest(name: str, when: datetime, cluster: str = "lab") -> Manifest:
    return Manifest(
        name=name,
        cluster=cluster,
        created=when.isoformat(),
        origin="backup",
        kubernetes_version="1.33.1",
        etcd_version="3.4.23",
        source={"host": "cp2", "member": "cp2", "endpoint": "https://10.0.0.12:2379"},
        members=[MemberRecord("6d26a04f504b92d5", "cp1", ["https://10.0.0.11:2380"])],
        revision=100,
        hash=123,
        total_keys=200,
        total_size=4096,
        keys=90,
        hash_kv=456,
        snapshot={"size": 4128, "sha256": "ab" * 32},
        file={"name": f"{name}.db", "size": 4128, "sha256": "ab" * 32},
        encryption=None,
        nodes=["cp1"],
    )


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
    assert gone == ["b0000", "b0001", "b0002"]
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
    with pytest.raises(UserError) as refused:
        prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0))
    assert str(refused.value).startswith(f"{store.directory / 'lab-1.json'}: refusing")
    assert "\n" not in str(refused.value)
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
    with pytest.raises(UserError, match="link out of the catalogue"):
        prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0))
    assert untouched(tmp_path) and (store.directory / "lab-1.db").is_symlink()
