"""The catalogue is authenticated, not just encrypted: backups made by k8sboot's own code
paths (`etcd backup`, `etcd pull`) decrypt and authenticate with a second implementation
written from docs/backup-format.md alone (pycryptodome, not the product's `cryptography`);
a plaintext file put in place of an encrypted one, a genuine backup replayed or renamed, a
changed manifest and a manifest without its MAC are refused; `etcd list` says when nothing
is authenticated."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from Crypto.Cipher import AES
from Crypto.Hash import HMAC, SHA256
from Crypto.Protocol.KDF import HKDF

from k8sboot.cli.app import cli
from k8sboot.etcd import backup as etcd_backup
from k8sboot.etcd import checks, scheduled
from k8sboot.etcd.archive import backup_key, create_key_file
from k8sboot.etcd.backup import SaveSnapshot
from k8sboot.etcd.catalogue import LocalStore, Manifest, state
from k8sboot.etcd.checks import VerifyFailed, local_check
from k8sboot.etcd.client import SnapshotStatus
from k8sboot.etcd.scheduled import PullSnapshots
from k8sboot.etcd.verify import EtcdVerify

from .conftest import BASE, load_data

# Names of Nodes as Kubernetes could never have them, for the canonical JSON's escaping.
ODD_NODES = {"cp1", 'nœud-ü\t"quoted"\\', "ctl\x01"}


# -- the second implementation, from docs/backup-format.md only ---------------------------


def decrypt(key: bytes, data: bytes) -> bytes:
    header = data[:45]
    assert header[:8] == b"K8SBETCD" and header[8] == 1
    record = int.from_bytes(header[9:13], "big") + 16
    salt = header[13:45]
    file_key = HKDF(key, 32, salt, SHA256, context=b"k8sboot etcd backup v1")
    body = data[45:]
    starts = list(range(0, len(body), record))
    plain = []
    for index, start in enumerate(starts):
        sealed = body[start : start + record]
        flag = b"\x01" if index == len(starts) - 1 else b"\x00"
        cipher = AES.new(file_key, AES.MODE_GCM, nonce=index.to_bytes(11, "big") + flag)
        cipher.update(header)
        plain.append(cipher.decrypt_and_verify(sealed[:-16], sealed[-16:]))
    return b"".join(plain)


_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def canonical(value: object) -> str:
    """RFC 8785 for what manifests hold: objects, arrays, strings, integers, null, booleans."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = []
        for ch in value:
            if ch in '"\\':
                escaped.append("\\" + ch)
            elif ch in _SHORT:
                escaped.append(_SHORT[ch])
            elif ord(ch) < 0x20:
                escaped.append(f"\\u{ord(ch):04x}")
            else:
                escaped.append(ch)
        return '"' + "".join(escaped) + '"'
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    assert isinstance(value, dict), value
    names = sorted(value, key=lambda name: name.encode("utf-16-be"))
    return "{" + ",".join(canonical(n) + ":" + canonical(value[n]) for n in names) + "}"


def expected_mac(key: bytes, manifest_json: bytes) -> str:
    document = json.loads(manifest_json)
    del document["mac"], document["verification"]
    mac_key = HKDF(key, 32, b"\0" * 32, SHA256, context=b"k8sboot etcd manifest mac v1")
    return HMAC.new(mac_key, canonical(document).encode(), SHA256).hexdigest()


# -- backups made by k8sboot's own code paths ----------------------------------------------


def etcd_snapshot(size: int) -> bytes:
    body = os.urandom(size)
    return body + hashlib.sha256(body).digest()


class Member:
    """A control plane whose etcd hands over `snapshot`, as the SSH transport would."""

    name = "cp1"

    def __init__(self, snapshot: bytes):
        self.snapshot = snapshot
        self.uploaded: list[bytes] = []

    def run(self, command: str, stdout_to=None, stdin=None, **_: object):
        out = ""
        if stdout_to is not None:
            for offset in range(0, len(self.snapshot), 65536):
                stdout_to.write(self.snapshot[offset : offset + 65536])
        elif stdin is not None:
            self.uploaded.append(stdin.read())
            out = str(len(self.uploaded[-1]))
        elif command.startswith("stat -c %s"):  # the size and etcd's checksum at its end
            out = f"{len(self.snapshot)}\n" + " ".join(f"{b:02x}" for b in self.snapshot[-32:])
        elif command.startswith("stat -c %Y"):
            out = "1765000000"
        return SimpleNamespace(stdout=out, ok=True, stderr="")

    ask = run  # a question runs as any command here


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Take backups with k8sboot's code into tmp_path/backups, keyed by tmp_path/backup.key."""
    key_file = tmp_path / "backup.key"
    create_key_file(key_file)
    spec = {**BASE, "name": "lab"}
    spec["backup"] = {"directory": str(tmp_path / "backups"), "encryptionKeyFile": str(key_file)}
    cluster = load_data(spec, tmp_path / "cluster.yaml").cluster
    member = Member(etcd_snapshot(1 << 20 | 1000))  # two records: 1 MiB, then the rest
    ctl = SimpleNamespace(
        connection=member,
        members=lambda: [],
        status=lambda endpoints: [],
        snapshot_save_streaming=lambda endpoint, remote: f"save {remote}",
        count_keys=lambda *_, **__: 42,
        hash_kv=lambda *_: 7,
        snapshot_status=lambda remote: SnapshotStatus(1234, 99, 200, len(member.snapshot)),
    )
    monkeypatch.setattr(etcd_backup, "ctl_for", lambda *_: ctl)
    monkeypatch.setattr(scheduled, "ctl_for", lambda *_: ctl)
    ctx = SimpleNamespace(cluster=cluster, nodes=set(ODD_NODES), notes=[])
    executor = SimpleNamespace(ctx=ctx, progress=lambda *_: None)

    pulls = itertools.count()

    def backup(how: str = "backup") -> Manifest:
        if how == "pull":
            scheduled.pull(executor, PullSnapshots("cp1", (f"/snap/lab-{next(pulls)}.db",)))
            return sorted(store.manifests(), key=lambda m: m.origin)[-1]
        return etcd_backup.take_snapshot(
            executor, SaveSnapshot("cp1", "https://10.0.0.11:2379", "cp1", "-", "backup")
        )

    store = LocalStore(tmp_path / "backups")
    key = base64.b64decode(key_file.read_text())
    return SimpleNamespace(
        backup=backup, store=store, cluster=cluster, key=key, member=member, executor=executor
    )


def read(lab, name: str) -> dict:
    return json.loads((lab.store.directory / f"{name}.json").read_bytes())


def write(lab, document: dict) -> Manifest:
    path = lab.store.directory / f"{document['name']}.json"
    path.write_text(json.dumps(document))
    return Manifest.from_json(path.read_bytes(), str(path))


def refused(lab, manifest: Manifest, said: str) -> str:
    """`etcd verify` and restore's check both refuse the backup, in one line saying `said`;
    the refusal is not recorded as a failed verify."""
    with pytest.raises(VerifyFailed, match=said) as raised:
        local_check(lab.store, manifest, lab.cluster)
    message = str(raised.value)
    assert message.startswith(f"backup {manifest.name} ") and "\n" not in message
    before = read(lab, manifest.name)["verification"]
    with pytest.raises(VerifyFailed, match=said):
        EtcdVerify(lab.store, manifest).plan(SimpleNamespace(cluster=lab.cluster))  # type: ignore[arg-type]
    assert read(lab, manifest.name)["verification"] == before
    listed = state(manifest, lab.store, backup_key(lab.cluster))
    plaintext = manifest.encryption is None
    assert listed.startswith("plaintext: not authenticated" if plaintext else "UNAUTHENTICATED")
    return message


@pytest.mark.parametrize("how", ["backup", "pull"])
def test_a_second_implementation_decrypts_the_backup_and_checks_its_manifest(lab, how) -> None:
    made = lab.backup(how)
    raw = (lab.store.directory / made.file["name"]).read_bytes()
    plain = decrypt(lab.key, raw)
    assert plain == lab.member.snapshot
    assert hashlib.sha256(plain[:-32]).digest() == plain[-32:]  # etcd's own checksum
    manifest_json = (lab.store.directory / f"{made.name}.json").read_bytes()
    document = json.loads(manifest_json)
    assert document["mac"] == expected_mac(lab.key, manifest_json)
    if how == "backup":  # a pulled snapshot records no Nodes
        assert set(document["nodes"]) == ODD_NODES  # escaping exercised
    assert document["snapshot"]["sha256"] == hashlib.sha256(plain).hexdigest()
    assert document["file"]["sha256"] == hashlib.sha256(raw).hexdigest()
    document["revision"] += 1
    assert document["mac"] != expected_mac(lab.key, json.dumps(document).encode())
    local_check(lab.store, made, lab.cluster)  # k8sboot accepts what it made,
    verified = json.loads(manifest_json)
    verified["verification"] = {"integrity": "ok", "test_restore": {"ok": True}}
    local_check(lab.store, write(lab, verified), lab.cluster)  # and what `etcd verify` adds


@pytest.mark.parametrize("keep_encryption_record", [True, False])
def test_a_plaintext_snapshot_put_in_place_of_a_backup_is_refused(
    lab, keep_encryption_record: bool
) -> None:
    """Someone who can write to the catalogue but lacks the key replaces the file with a
    plaintext snapshot of their own and fixes up the manifest's sizes and hashes."""
    made = lab.backup()
    forged = etcd_snapshot(5000)
    document = read(lab, made.name)
    sha = hashlib.sha256(forged).hexdigest()
    document["snapshot"] = {"size": len(forged), "sha256": sha}
    document["file"] = {"name": made.file["name"], "size": len(forged), "sha256": sha}
    if not keep_encryption_record:
        (lab.store.directory / made.file["name"]).unlink()
        document["file"]["name"] = f"{made.name}.db"
        document["encryption"] = None
    (lab.store.directory / document["file"]["name"]).write_bytes(forged)
    manifest = write(lab, document)
    said = "fails authentication" if keep_encryption_record else "is a plaintext backup"
    refused(lab, manifest, said)
    with pytest.raises(VerifyFailed, match=said):  # restore's staging checks again
        checks.upload_plain(lab.executor, lab.member, lab.store, manifest, "/x/snapshot.db")
    assert lab.member.uploaded == []


def test_a_genuine_backup_replayed_or_renamed_is_refused(lab) -> None:
    older, newer = lab.backup(), lab.backup()
    assert older.name != newer.name
    directory = lab.store.directory
    # The older file under the newer name, the manifest fixed up to match it.
    shutil.copyfile(directory / older.file["name"], directory / newer.file["name"])
    document, replayed = read(lab, newer.name), read(lab, older.name)
    document["snapshot"] = replayed["snapshot"]
    document["file"] = {**replayed["file"], "name": newer.file["name"]}
    refused(lab, write(lab, document), "fails authentication")
    # The older backup as a later one: both files renamed, the manifest's names and time too.
    later = "lab-20991231T000000Z"
    document = read(lab, older.name)
    (directory / f"{older.name}.json").unlink()
    os.rename(directory / older.file["name"], directory / f"{later}.db.enc")
    document |= {"name": later, "created": "2099-12-31T00:00:00+00:00"}
    document["file"]["name"] = f"{later}.db.enc"
    refused(lab, write(lab, document), "fails authentication")


@pytest.mark.parametrize(
    "field, value",
    [
        ("cluster", "other"),
        ("created", "2099-01-01T00:00:00+00:00"),
        ("origin", "pre-restore"),
        ("revision", 1),
        ("revision", float("nan")),  # JSON as Python reads it
        ("keys", 1),
        ("hash_kv", 1),
        ("kubernetes_version", "1.28.0"),
        ("source", {"host": "w1", "member": "cp1", "endpoint": "https://10.0.0.21:2379"}),
        ("nodes", ["cp1"]),
        ("mac", "00" * 32),
        ("mac", "é"),
    ],
)
def test_a_changed_manifest_is_refused(lab, field: str, value: object) -> None:
    made = lab.backup()
    document = read(lab, made.name)
    document[field] = value
    refused(lab, write(lab, document), "fails authentication: its manifest was changed")


def test_a_manifest_without_a_mac_is_refused_naming_the_way_forward(lab, tmp_path) -> None:
    """Backups made before k8sboot wrote MACs, or whose MAC was removed."""
    made = lab.backup()
    document = read(lab, made.name)
    del document["mac"]
    message = refused(lab, write(lab, document), "has no manifest MAC")
    assert "take a new backup with `k8sboot etcd backup`" in message
    result = CliRunner().invoke(
        cli, ["etcd", "list", "-f", str(_cluster_file(tmp_path, key=True)), "-o", "json"]
    )
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)["backups"]
    assert row["state"].startswith(f"UNAUTHENTICATED: {made.name} has no manifest MAC")


def _cluster_file(tmp_path: Path, key: bool) -> Path:
    spec = {**BASE, "name": "lab", "backup": {"directory": str(tmp_path / "backups")}}
    if key:
        spec["backup"]["encryptionKeyFile"] = str(tmp_path / "backup.key")
    path = tmp_path / f"cluster-{key}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_list_says_plainly_when_backups_are_not_authenticated(lab, tmp_path) -> None:
    lab.backup()
    run = CliRunner().invoke
    for key in (False, True):
        spec = str(_cluster_file(tmp_path, key))
        text = run(cli, ["etcd", "list", "-f", spec])
        listed = json.loads(run(cli, ["etcd", "list", "-f", spec, "-o", "json"]).stdout)
        assert listed["authenticated"] is key
        notices = [line for line in text.stdout.splitlines() if "not authenticated" in line]
        if key:
            assert notices == [] and text.exit_code == 0
        else:
            assert notices == [
                "backups are not authenticated: without backup.encryptionKeyFile, whoever can "
                "write to the catalogue can change or replace them unnoticed"
            ]
    assert base64.b64encode(lab.key).decode() not in text.output  # no key material shown
