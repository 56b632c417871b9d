"""Which backup catalogue a command works on: the one the cluster file names (a local
directory, or an S3 bucket through s3.py), or the directory of a backup given by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k8sboot.etcd.catalogue import LocalStore, Manifest, Store, find
from k8sboot.etcd.s3 import S3Store


def open_store(cluster: Any) -> Store:
    """The catalogue the cluster file names: backup.s3, else backup.directory, else
    <stateDir>/backups."""
    backup = cluster.backup
    if getattr(backup, "s3", None) is not None:
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
