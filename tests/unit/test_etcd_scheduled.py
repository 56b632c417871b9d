"""Scheduled snapshots at rest on the control planes: encrypted with age to a recipient
derived from the backup key, decrypted by `etcd pull`, removed with the schedule and on
reset (issue 16)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pyrage
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from k8sboot import workflows
from k8sboot.actions import RunCommands, WriteFiles
from k8sboot.errors import MachineError
from k8sboot.etcd.archive import Key, check_file, create_key_file
from k8sboot.etcd.catalogue import LocalStore
from k8sboot.etcd.external import ResetEtcd
from k8sboot.etcd.files import SNAPSHOT_SCRIPT, snapshot_files
from k8sboot.etcd.scheduled import (
    EtcdPull,
    EtcdSchedule,
    PullSnapshots,
    _bech32,
    identity_of,
    recipient_of,
)
from k8sboot.facts import ProbeRequest
from k8sboot.host_state import ETCD_SNAPSHOT_DIR
from k8sboot.transport import CommandResult, ReadOnlyHosts
from k8sboot.versions import ETCDCTL, ETCDUTL

from .conftest import load_data
from .factsdata import context, converged_host
from .fakes import FakeConnection, scripted

KEY = Key(bytes(range(32)))
# Recorded once: a change here would strand every snapshot sealed before it.
KEY_IDENTITY = "AGE-SECRET-KEY-1WQZA27SMKN0M3LGPM3TA7Y7HH02Z77RPWNUPUFG70ULNFUDJFNUSGDPCY6"
KEY_RECIPIENT = "age1sxhjac82vj5a8597c0y4g3f96qdsxa9wru6mlqj00xtlsq4krgesm6pwgm"
STATUS = {"hash": 3735928559, "revision": 41, "totalKey": 57, "totalSize": 24576}


def snapshot(body: bytes = b"/registry/secrets/default/token " * 300) -> bytes:
    """An etcd snapshot as far as the checks go: data, then the sha256 of it."""
    return body + hashlib.sha256(body).digest()


def cluster_with(tmp_path: Path, schedule: str | None = "hourly", key: bool = True):
    backup: dict = {"directory": str(tmp_path / "backups")}
    if key:
        path = tmp_path / "keys" / "backup.key"
        if not path.exists():
            create_key_file(path)
        backup["encryptionKeyFile"] = str(path)
    if schedule:
        backup["schedule"] = schedule
    data = {
        "apiVersion": "k8sboot/v1alpha1",
        "kind": "Cluster",
        "name": "lab",
        "hosts": [{"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane"]}],
        "backup": backup,
    }
    return load_data(data).cluster


def key_of(cluster) -> Key:
    from k8sboot.etcd.archive import load_key

    return load_key(cluster.backup.encryption_key_file)


# -- the identity -------------------------------------------------------------------------


def test_the_identity_is_derived_stably_and_its_recipient_matches() -> None:
    assert identity_of(KEY) == KEY_IDENTITY
    assert recipient_of(KEY) == KEY_RECIPIENT
    parsed = pyrage.x25519.Identity.from_str(KEY_IDENTITY)
    assert str(parsed) == KEY_IDENTITY and str(parsed.to_public()) == KEY_RECIPIENT
    # The secret is HKDF-SHA256 of the key with its own info string (as the README says),
    # and the recipient its X25519 public key, in age's encoding.
    secret = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"k8sboot etcd scheduled snapshots age identity v1",
    ).derive(KEY.material)
    public = X25519PrivateKey.from_private_bytes(secret).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert _bech32("age", raw) == KEY_RECIPIENT
    assert identity_of(Key(bytes(32))) != KEY_IDENTITY


def test_the_bech32_encoding_agrees_with_pyrage() -> None:
    for seed in range(64):
        secret = hashlib.sha256(bytes([seed])).digest()
        identity = pyrage.x25519.Identity.from_str(_bech32("age-secret-key-", secret).upper())
        public = (
            X25519PrivateKey.from_private_bytes(secret)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        assert str(identity.to_public()) == _bech32("age", public)


def test_age_identity_writes_a_private_file_and_prints_no_secret(tmp_path, monkeypatch) -> None:
    import yaml
    from click.testing import CliRunner

    from k8sboot.cli.app import cli

    cluster = cluster_with(tmp_path)
    monkeypatch.chdir(tmp_path)
    data = {
        "apiVersion": "k8sboot/v1alpha1",
        "kind": "Cluster",
        "name": "lab",
        "hosts": [{"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane"]}],
        "backup": {"encryptionKeyFile": str(cluster.backup.encryption_key_file)},
    }
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(data))
    runner = CliRunner()
    done = runner.invoke(cli, ["etcd", "age-identity", "id/age.txt"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    written = tmp_path / "id" / "age.txt"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    identity = identity_of(key_of(cluster))
    assert identity in written.read_text() and identity not in done.output
    assert recipient_of(key_of(cluster)) in done.output
    again = runner.invoke(cli, ["etcd", "age-identity", "id/age.txt"])
    assert again.exit_code == 2 and "never overwrites" in again.output


# -- the script on the hosts ---------------------------------------------------------------


def rendered(cluster) -> str:
    host = cluster.control_planes[0]
    (script,) = [f for f in snapshot_files(cluster, host, recipient_of(key_of(cluster)))
                 if f.path == SNAPSHOT_SCRIPT]  # fmt: skip
    return script.content


def test_the_encrypted_script_seals_to_the_recipient_and_keeps_no_plain_file(tmp_path) -> None:
    cluster = cluster_with(tmp_path)
    script = rendered(cluster)
    assert f'recipient="{recipient_of(key_of(cluster))}"' in script
    assert 'age -r "$recipient"' in script
    assert identity_of(key_of(cluster)) not in script
    assert 'mv "$tmp" "$dir/$name.db"' not in script  # the plain snapshot is never kept
    assert 'trap \'rm -f "$tmp"' in script and "trap 'exit 1' HUP INT TERM" in script
    assert 'ls -1t "$dir"/*.db.age' in script  # retention counts the encrypted files
    plain = snapshot_files(cluster, cluster.control_planes[0], None)[0].content
    assert "age" not in plain.replace("stage", "")  # without a key: as before


def _fake_tools(bin_dir: Path, plain: Path, fail_status: bool = False) -> None:
    bin_dir.mkdir()
    (bin_dir / "etcdctl").write_text(
        '#!/bin/sh\nfor last; do :; done\ncp "$K8SBOOT_TEST_SNAPSHOT" "$last"\n'
    )
    status = "exit 1" if fail_status else f"echo '{json.dumps(STATUS)}'"
    (bin_dir / "etcdutl").write_text(f"#!/bin/sh\n{status}\n")
    for tool in ("etcdctl", "etcdutl"):
        (bin_dir / tool).chmod(0o755)


def _run_script(tmp_path: Path, fail_status: bool = False, before: bytes | None = None):
    if shutil.which("age") is None:
        if os.environ.get("K8SBOOT_LAB_REQUIRED") == "1":
            pytest.fail("age is not installed (.ci/lab-deps installs it)")
        pytest.skip("age is not installed (apt-get install age)")
    cluster = cluster_with(tmp_path)
    directory = tmp_path / "snapshots"
    script = (
        rendered(cluster)
        .replace(ETCD_SNAPSHOT_DIR, str(directory))
        .replace(ETCDCTL, "etcdctl")
        .replace(ETCDUTL, "etcdutl")
    )
    (tmp_path / "script").write_text(script)
    plain = tmp_path / "plain.db"
    plain.write_bytes(snapshot())
    _fake_tools(tmp_path / "bin", plain, fail_status)
    if before is not None:  # a plain snapshot from before encryption was configured
        directory.mkdir(mode=0o700)
        (directory / "lab-cp1-20261201T000000Z.db").write_bytes(before)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
           "K8SBOOT_TEST_SNAPSHOT": str(plain)}  # fmt: skip
    done = subprocess.run(["sh", str(tmp_path / "script")], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    return cluster, directory, done


def _decrypt(cluster, path: Path) -> bytes:
    identity = pyrage.x25519.Identity.from_str(identity_of(key_of(cluster)))
    return pyrage.decrypt(path.read_bytes(), [identity])


def test_the_script_leaves_only_encrypted_snapshots(tmp_path: Path) -> None:
    older = snapshot(b"older " * 100)
    cluster, directory, done = _run_script(tmp_path, before=older)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in directory.iterdir())
    assert len(files) == 4, files
    assert all(f.endswith((".db.age", ".db.status")) for f in files), files
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    sealed = sorted(directory.glob("*.db.age"))
    for path in [*sealed, *directory.glob("*.db.status")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert b"/registry/" not in path.read_bytes()
    assert {_decrypt(cluster, p) for p in sealed} == {snapshot(), older}
    status_line, digest = (directory / sealed[-1].name.replace(".age", ".status")).read_text(
    ).splitlines()  # fmt: skip
    assert json.loads(status_line) == STATUS
    assert digest == hashlib.sha256(_decrypt(cluster, sealed[-1])).hexdigest()


def test_a_failed_check_leaves_no_plain_snapshot(tmp_path: Path) -> None:
    _, directory, done = _run_script(tmp_path, fail_status=True)
    assert done.returncode != 0
    assert list(directory.iterdir()) == []


# -- pull -----------------------------------------------------------------------------------


def _host(files: dict[str, bytes]) -> FakeConnection:
    """A control plane whose snapshot directory holds `files` (as `cat` shows them; any
    other file is missing), each last changed at the same time."""
    cat = {f"cat {shlex.quote(path)}": content for path, content in files.items()}
    missing = CommandResult("cp1", "cat", 1, b"", "No such file or directory", 0.0)
    return FakeConnection("cp1", {**cat, "cat ": missing, "stat ": "1796083200\n"}, files)


def _sealed_files(cluster, name: str, data: bytes, recipient: str | None = None) -> dict:
    recipient = recipient or recipient_of(key_of(cluster))
    sealed = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(recipient)])
    status = f"{json.dumps(STATUS)}\n{hashlib.sha256(data).hexdigest()}\n"
    return {f"{ETCD_SNAPSHOT_DIR}/{name}.db.age": sealed,
            f"{ETCD_SNAPSHOT_DIR}/{name}.db.status": status.encode()}  # fmt: skip


def _pull(cluster, tmp_path: Path, monkeypatch, host: FakeConnection):
    from k8sboot.etcd import scheduled as executing

    monkeypatch.setattr(executing, "ctl_for", lambda *_: SimpleNamespace(connection=host))
    ctx = SimpleNamespace(cluster=cluster, nodes=set(), notes=[])
    executor = SimpleNamespace(ctx=ctx, progress=lambda *_: None)
    remotes = tuple(sorted(p for p in host.files if p.endswith(".db.age")))
    outcome = executing.pull(executor, PullSnapshots("cp1", remotes))
    return outcome, LocalStore(Path(cluster.backup.directory))


def test_pull_decrypts_and_catalogues(tmp_path: Path, monkeypatch) -> None:
    cluster = cluster_with(tmp_path)
    host = _host(_sealed_files(cluster, "lab-cp1-20261207T000000Z", snapshot()))
    outcome, store = _pull(cluster, tmp_path, monkeypatch, host)
    (manifest,) = store.manifests()
    assert manifest.name == "lab-cp1-20261207T000000Z"
    assert manifest.revision == 41 and manifest.total_keys == 57
    assert manifest.snapshot["sha256"] == hashlib.sha256(snapshot()).hexdigest()
    assert manifest.encryption and manifest.encryption["key_id"] == key_of(cluster).id
    stored = store.path(manifest.file["name"])
    assert stored.name.endswith(".db.enc") and b"/registry/" not in stored.read_bytes()
    found = check_file(stored, key_of(cluster), encrypted=True)
    assert found.trailer_ok and found.sha256 == manifest.snapshot["sha256"]
    assert outcome.notes == ("pulled from cp1: lab-cp1-20261207T000000Z",)


def test_pull_reports_a_file_it_cannot_decrypt_and_catalogues_the_rest(
    tmp_path: Path, monkeypatch
) -> None:
    cluster = cluster_with(tmp_path)
    stranger = str(pyrage.x25519.Identity.generate().to_public())
    files = {
        **_sealed_files(cluster, "lab-cp1-20261207T000000Z", snapshot()),
        **_sealed_files(cluster, "lab-cp1-20261207T010000Z", snapshot(), stranger),
    }
    with pytest.raises(MachineError, match=r"20261207T010000Z\.db\.age does not decrypt"):
        _pull(cluster, tmp_path, monkeypatch, _host(files))
    store = LocalStore(Path(cluster.backup.directory))
    assert [m.name for m in store.manifests()] == ["lab-cp1-20261207T000000Z"]
    assert sorted(p.name for p in store.directory.iterdir()) == [
        "lab-cp1-20261207T000000Z.db.enc",
        "lab-cp1-20261207T000000Z.json",
    ]


def test_pull_refuses_a_snapshot_its_status_does_not_describe(tmp_path, monkeypatch) -> None:
    cluster = cluster_with(tmp_path)
    files = _sealed_files(cluster, "lab-cp1-20261207T000000Z", snapshot())
    files[f"{ETCD_SNAPSHOT_DIR}/lab-cp1-20261207T000000Z.db.status"] = (
        f"{json.dumps(STATUS)}\n{'0' * 64}\n".encode()
    )
    with pytest.raises(MachineError, match="sha256 differs"):
        _pull(cluster, tmp_path, monkeypatch, _host(files))
    assert not Path(cluster.backup.directory).exists() or not any(
        Path(cluster.backup.directory).glob("*.json")
    )


# -- the schedule's steps ------------------------------------------------------------------


def _ctx(cluster, tmp_path: Path, **exists: bool):
    found = converged_host(cluster, "cp1")
    found.data["exists"][ETCD_SNAPSHOT_DIR] = exists.get("directory", False)
    if exists.get("timer"):
        found.data["files"]["/etc/systemd/system/k8sboot-etcd-snapshot.timer"] = "h"
    ctx = context(cluster, {"cp1": found}, tmp_path)
    answers = {
        "systemd-analyze calendar": "Normalized form: *-*-* *:00:00\n",
        "systemctl is-enabled": "enabled\nactive\n",
        "ls -1 ": f"{ETCD_SNAPSHOT_DIR}/lab-cp1-1.db.age\n",
    }
    ctx.view = ReadOnlyHosts(scripted(["cp1"], answers))  # type: ignore[arg-type]
    return ctx


def test_the_schedule_installs_age_and_writes_the_sealing_script(tmp_path: Path) -> None:
    cluster = cluster_with(tmp_path)
    install, write, _enable = EtcdSchedule().plan(_ctx(cluster, tmp_path))
    assert isinstance(install, RunCommands) and "apt-get install" in install.commands[0][1]
    assert " age" in install.commands[0][1]
    assert isinstance(write, WriteFiles)
    (script,) = [f for f in write.files if f.path == SNAPSHOT_SCRIPT]
    assert recipient_of(key_of(cluster)) in script.content


@pytest.mark.parametrize("timer", [True, False])
def test_removing_the_schedule_removes_the_host_snapshots(tmp_path: Path, timer: bool) -> None:
    cluster = cluster_with(tmp_path, schedule=None)
    (action,) = EtcdSchedule().plan(_ctx(cluster, tmp_path, directory=True, timer=timer))
    assert isinstance(action, RunCommands)
    assert f"rm -rf {ETCD_SNAPSHOT_DIR}" in action.commands[0][1]
    assert ETCD_SNAPSHOT_DIR in action.describe()  # the plan says what goes


@pytest.mark.parametrize("timer", [True, False])
def test_reset_removes_the_host_snapshots(tmp_path: Path, timer: bool) -> None:
    cluster = cluster_with(tmp_path, schedule=None)
    (action,) = ResetEtcd().plan(_ctx(cluster, tmp_path, directory=True, timer=timer))
    assert isinstance(action, RunCommands)
    assert f"rm -rf {ETCD_SNAPSHOT_DIR}" in dict(action.commands)["cp1"]
    assert ETCD_SNAPSHOT_DIR in action.describe()


def test_hosts_are_probed_for_age_and_the_snapshot_directory(tmp_path: Path) -> None:
    cluster = cluster_with(tmp_path)
    request = ProbeRequest.for_(step.wants(cluster) for step in workflows.etcd_schedule().steps)
    assert "age" in request.packages and ETCD_SNAPSHOT_DIR in request.exists


def test_pull_lists_encrypted_snapshots(tmp_path: Path) -> None:
    cluster = cluster_with(tmp_path)
    pull, _prune = EtcdPull().plan(_ctx(cluster, tmp_path))
    assert isinstance(pull, PullSnapshots)
    assert pull.files == (f"{ETCD_SNAPSHOT_DIR}/lab-cp1-1.db.age",)


def test_a_pulled_snapshot_is_catalogued_authenticated(tmp_path: Path, monkeypatch) -> None:
    from k8sboot.etcd.authenticity import why_untrusted

    cluster = cluster_with(tmp_path)
    host = _host(_sealed_files(cluster, "lab-cp1-20261207T000000Z", snapshot()))
    _, store = _pull(cluster, tmp_path, monkeypatch, host)
    (manifest,) = store.manifests()
    assert manifest.mac and why_untrusted(manifest, key_of(cluster)) is None
