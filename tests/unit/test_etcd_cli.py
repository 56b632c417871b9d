"""`k8sboot etcd` on the command line without machines: usage errors, keys, the catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli.app import cli
from k8sboot.etcd.catalogue import LocalStore

from .builders import START, manifest
from .conftest import BASE


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump({**BASE, "name": "lab"}))
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args), catch_exceptions=False)


def test_etcd_commands_have_help(run) -> None:
    listed = run("etcd", "--help").output.split("Commands:")[1].split()
    for name in ("backup", "snapshot", "list", "verify", "restore", "health", "status",
                 "members", "defrag", "alarms", "schedule", "pull", "keygen",
                 "age-identity"):  # fmt: skip
        assert name in listed
        assert run("etcd", name, "--help").exit_code == 0


def test_restore_without_yes_is_a_usage_error(run) -> None:
    result = run("etcd", "restore", "latest")
    assert result.exit_code == 2 and "--yes" in result.output


def test_restore_names_a_backup_or_a_rollback_never_both(run) -> None:
    for args, said in (
        ((), "name the BACKUP to restore"),
        (("latest", "--rollback", "0badcafe", "--yes"), "--rollback TAG takes no BACKUP"),
        (("--rollback", "0badcafe", "--onto", "cp1", "--yes"), "takes no BACKUP and no --onto"),
        (("--rollback", "0badcafe"), "a rollback undoes the restore; pass --yes"),
    ):
        result = run("etcd", "restore", *args)
        assert result.exit_code == 2 and said in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_keygen_writes_a_private_key_once(run, tmp_path: Path) -> None:
    result = run("etcd", "keygen", "keys/backup.key")
    assert result.exit_code == 0 and "key id" in result.output
    assert (tmp_path / "keys/backup.key").stat().st_mode & 0o777 == 0o600
    again = run("etcd", "keygen", "keys/backup.key")
    assert again.exit_code == 2 and "never overwrites" in again.output


def test_list_shows_the_catalogue_and_fails_on_a_missing_file(run, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".k8sboot" / "lab" / "backups").ensure()
    item = manifest("lab-1", START)
    store.write_manifest(item)
    (store.directory / "lab-1.db").write_bytes(b"x" * item.file["size"])
    result = run("etcd", "list", "-o", "json")
    assert result.exit_code == 0
    (row,) = json.loads(result.output)["backups"]
    assert (row["name"], row["revision"], row["state"]) == ("lab-1", 100, "unchecked")
    (store.directory / "lab-1.db").unlink()
    result = run("etcd", "list")
    assert result.exit_code == 1 and "MISSING" in result.output


def test_list_check_reads_every_file(run, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".k8sboot" / "lab" / "backups").ensure()
    store.write_manifest(manifest("lab-1", START))
    (store.directory / "lab-1.db").write_bytes(b"y" * 4128)  # right size, wrong bytes
    result = run("etcd", "list", "--check", "-o", "json")
    assert result.exit_code == 1
    assert "sha256" in json.loads(result.output)["backups"][0]["state"]


@pytest.mark.parametrize("file_name", ["../outside.txt", "{tmp}/outside.txt"])
def test_a_manifest_naming_a_file_outside_the_catalogue_is_one_warning_line(
    run, tmp_path: Path, file_name: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"z" * 4128)  # the size the manifest gives
    store = LocalStore(tmp_path / ".k8sboot" / "lab" / "backups").ensure()
    good = manifest("lab-2", START)
    store.write_manifest(good)
    (store.directory / "lab-2.db").write_bytes(b"x" * good.file["size"])
    item = manifest("lab-1", START)
    item.file["name"] = file_name.format(tmp=tmp_path)
    (store.directory / "lab-1.json").write_bytes(item.to_json())
    for command in (("list", "--check"), ("list",)):
        result = run("etcd", *command, "-o", "json")
        assert result.exit_code == 1, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("warning: ") and "Traceback" not in line
        assert "lab-1.json: refusing the file name" in line
        listed = json.loads(result.stdout)
        assert [row["name"] for row in listed["backups"]] == ["lab-2"]
        assert [u["file"] for u in listed["unreadable"]] == ["lab-1.json"]
    assert outside.read_bytes() == b"z" * 4128


def test_list_shows_a_failed_verify_as_failed(run, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".k8sboot" / "lab" / "backups").ensure()
    item = manifest("lab-1", START)
    item.verification = {
        "integrity": "FAILED: backup lab-1 is corrupt: the sha256 of lab-1.db differs",
        "test_restore": {"ok": True},  # from an earlier verify
    }
    store.write_manifest(item)
    (store.directory / "lab-1.db").write_bytes(b"x" * item.file["size"])
    result = run("etcd", "list", "-o", "json")
    assert result.exit_code == 1
    (row,) = json.loads(result.output)["backups"]
    assert row["state"].startswith("FAILED: backup lab-1 is corrupt")
