"""The catalogue in an S3-compatible bucket, against moto's S3 server on loopback (skipped
when the optional extra and moto are not installed)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest

from k8sboot.etcd.archive import Key, SnapshotSink, check_file
from k8sboot.etcd.catalogue import keep, prune, state
from k8sboot.etcd.stores import open_store
from k8sboot.spec.model import Retention

from .builders import START, manifest
from .conftest import BASE, load_data

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def cluster(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"k8sboot-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    data = {**BASE, "backup": {"s3": {"bucket": bucket, "prefix": "lab/", "endpoint": endpoint}}}
    return load_data(data, tmp_path / "cluster.yaml").cluster


def test_spec_takes_a_bucket_or_a_directory(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not both"):
        load_data({**BASE, "backup": {"directory": "b", "s3": {"bucket": "abc"}}})


def test_backups_round_trip_through_the_bucket(cluster, tmp_path: Path) -> None:
    store = open_store(cluster)
    assert store.location.startswith("s3://k8sboot-") and store.location.endswith("/lab/")
    key = Key(b"\x07" * 32)
    body = os.urandom(300_000)
    snapshot = body + hashlib.sha256(body).digest()
    with store.writer("b1.db.enc") as out:
        sink = SnapshotSink(out, key)
        sink.write(snapshot)
        sink.close()
    item = manifest("b1", START)
    item.file = {"name": "b1.db.enc", "size": sink.stored, "sha256": sink.file_sha.hexdigest()}
    store.write_manifest(item)
    assert [m.name for m in store.manifests()] == ["b1"]
    assert store.read_manifest("b1") == item and store.read_manifest("nope") is None
    assert store.file_size("b1.db.enc") == sink.stored and store.file_size("x") is None
    with store.local_copy("b1.db.enc") as path:
        assert path.stat().st_mode & 0o777 == 0o600
        found = check_file(path, key, encrypted=True)
        assert found.trailer_ok and found.sha256 == hashlib.sha256(snapshot).hexdigest()
    assert not any(p.name.endswith("b1.db.enc") for p in store.cache.iterdir())  # cache emptied
    with pytest.raises(RuntimeError), store.writer("b2.db") as out:
        out.write(b"half")
        raise RuntimeError  # a failed download uploads nothing
    assert store.file_size("b2.db") is None


def test_retention_prunes_the_bucket(cluster) -> None:
    store = open_store(cluster)
    for i in range(4):
        item = manifest(f"b{i}", START + timedelta(hours=i))
        with store.writer(item.file["name"]) as out:
            out.write(b"x")
        store.write_manifest(item)
    policy = Retention(last=2, hourly=0, daily=0, weekly=0)
    assert keep(store.manifests(), policy) == {"b2", "b3"}
    assert prune(store, "lab", policy) == (["b0", "b1"], [])
    assert [m.name for m in store.manifests()] == ["b2", "b3"]
    assert store.file_size("b0.db") is None


@pytest.mark.parametrize("file_name", ["../secret.db", "/secret.db", "other/b0.db"])
def test_a_manifest_naming_a_key_outside_the_prefix_is_refused(cluster, file_name: str) -> None:
    store = open_store(cluster)
    for key in ("secret.db", "lab/other/b0.db"):  # outside the catalogue lab/
        store.client.put_object(Bucket=store.bucket, Key=key, Body=b"not k8sboot's")
    changed = manifest("b0", START)
    changed.file["name"] = file_name
    store.client.put_object(Bucket=store.bucket, Key="lab/b0.json", Body=changed.to_json())
    newer = manifest("b1", START + timedelta(hours=1))
    store.write_manifest(newer)
    # Skipped and reported, not acted on: retention keeps one, of the manifests it can trust.
    assert prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0)) == ([], [])
    assert list(store.unreadable) == ["b0.json"]
    refused = store.unreadable["b0.json"]
    assert re.match(r"s3://k8sboot-\w+/lab/b0\.json: refusing the file name", refused)
    listed = store.client.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert sorted(item["Key"] for item in listed) == [
        "lab/b0.json",
        "lab/b1.json",
        "lab/other/b0.db",
        "secret.db",
    ]


def test_prune_reports_what_the_bucket_refused_to_delete(cluster, monkeypatch) -> None:
    store = open_store(cluster)
    for i in range(3):
        item = manifest(f"b{i}", START + timedelta(hours=i))
        with store.writer(item.file["name"]) as out:
            out.write(b"x")
        store.write_manifest(item)
    real = store.client.delete_objects

    def object_lock(**kwargs):  # what S3 answers for an object under retention
        wanted = kwargs["Delete"]["Objects"]
        locked = [o for o in wanted if o["Key"] == "lab/b0.db"]
        others = [o for o in wanted if o not in locked]
        answer = real(**{**kwargs, "Delete": {"Objects": others}}) if others else {}
        answer["Errors"] = [
            {"Key": o["Key"], "Code": "AccessDenied", "Message": "Access Denied"} for o in locked
        ]
        return answer

    monkeypatch.setattr(store.client, "delete_objects", object_lock)
    gone, problems = prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0))
    assert gone == ["b1"]
    assert problems == [
        f"b0 not deleted: {store.location}: lab/b0.db was not deleted (AccessDenied: Access Denied)"
    ]
    # b0's manifest stays with its file: still listed, still pruned next time
    assert [m.name for m in store.manifests()] == ["b0", "b2"]


def test_a_file_s3_will_not_describe_is_not_called_missing(cluster, monkeypatch) -> None:
    from botocore.exceptions import ClientError

    store = open_store(cluster)
    item = manifest("b0", START)
    store.write_manifest(item)
    assert state(item, store) == "MISSING"

    def denied(**_: object) -> None:
        raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    monkeypatch.setattr(store.client, "head_object", denied)
    found = state(item, store)
    assert found.startswith("UNKNOWN: ") and "403" in found and "MISSING" not in found


def test_prune_empties_the_cache_of_killed_runs(cluster) -> None:
    store = open_store(cluster)
    store.cache.mkdir(parents=True)
    killed = store.cache / ".1234abcd-b9.db"  # a plain snapshot a killed run left
    killed.write_bytes(b"secrets")
    when = time.time() - 3600
    os.utime(killed, (when, when))
    with store.writer("b0.db") as out:
        out.write(b"x")
        busy = [p for p in store.cache.iterdir() if p.name.endswith("-b0.db")]
        os.utime(busy[0], (when, when))
        prune(store, "lab", Retention(last=1, hourly=0, daily=0, weekly=0))
        assert busy[0].exists()
    assert not killed.exists() and store.file_size("b0.db") == 1
