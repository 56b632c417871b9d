"""Backups made up for tests: catalogue entries and a store no test writes to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from k8sboot.etcd.catalogue import LocalStore, Manifest, MemberRecord

START = datetime(2025, 3, 3, 0, 30, tzinfo=UTC)  # a Monday
STORE = LocalStore(Path("/nonexistent/backups"))


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


def stored(store: LocalStore, item: Manifest, data: bytes | None = None) -> Manifest:
    """`item` in the catalogue, with a file of its size (`data`, or filler)."""
    store.write_manifest(item)
    (store.directory / item.file["name"]).write_bytes(data or b"x" * item.file["size"])
    return item
