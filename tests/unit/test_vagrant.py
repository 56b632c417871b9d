from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli.app import cli
from k8sboot.cli.common import App
from k8sboot.errors import MachineError, UserError
from k8sboot.vagrant import parse_ssh_config, parse_status, read_environment

STATUS = """\
1795449117,cp1,metadata,provider,virtualbox
1795449117,cp1,provider-name,virtualbox
1795449117,cp1,state,running
1795449117,cp1,state-human-short,running
1795449117,w1,provider-name,virtualbox
1795449117,w1,state,running
1795449117,w2,provider-name,virtualbox
1795449117,w2,state,poweroff
1795449117,,ui,info,Current machine states:\\n\\ncp1 running%!(VAGRANT_COMMA) w1
"""

SSH_CONFIG = """\
Host cp1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  IdentityFile "/home/me/proj/.vagrant/machines/cp1/virtualbox/private_key"
  IdentitiesOnly yes

Host w1
  HostName 127.0.0.1
  User vagrant
  Port 2200
  IdentityFile /home/me/proj/.vagrant/machines/w1/virtualbox/private_key
"""


def test_parse_status() -> None:
    assert parse_status(STATUS) == {
        "cp1": {"state": "running", "provider": "virtualbox"},
        "w1": {"state": "running", "provider": "virtualbox"},
        "w2": {"state": "poweroff", "provider": "virtualbox"},
    }


def test_parse_ssh_config() -> None:
    hosts = parse_ssh_config(SSH_CONFIG)
    assert hosts["cp1"]["Port"] == "2222"
    assert hosts["cp1"]["IdentityFile"].endswith("cp1/virtualbox/private_key")
    assert hosts["w1"]["HostName"] == "127.0.0.1"


@pytest.fixture
def fake_vagrant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A `vagrant` on PATH that answers like the real one and records its calls."""
    project = tmp_path / "project"
    (project / ".vagrant").mkdir(parents=True)
    (project / "Vagrantfile").write_text("# fake\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "status.txt").write_text(STATUS.replace("poweroff", "running"))
    (tmp_path / "running.txt").write_text(STATUS.replace("poweroff", "running"))
    (tmp_path / "ssh.txt").write_text(
        SSH_CONFIG + "\nHost w2\n  HostName 127.0.0.1\n"
        "  User vagrant\n  Port 2201\n  IdentityFile /k/w2\n"
    )
    script = bin_dir / "vagrant"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        echo "$@" >> {tmp_path}/calls
        case "$1" in
          status) cat {tmp_path}/status.txt ;;
          ssh-config) cat {tmp_path}/ssh.txt ;;
          up) cp {tmp_path}/running.txt {tmp_path}/status.txt ;;
          *) exit 1 ;;
        esac
        """)
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("VAGRANT_CWD", raising=False)
    monkeypatch.delenv("VAGRANT_DOTFILE_PATH", raising=False)
    monkeypatch.chdir(project)
    metadata = {
        "version": 1,
        "machines": [
            {"name": "cp1", "roles": ["control-plane"], "address": "192.168.56.11"},
            {"name": "w1", "roles": ["worker"], "address": "192.168.56.101"},
            {"name": "w2", "roles": ["worker"], "address": "192.168.56.102"},
        ],
    }
    (project / ".vagrant" / "k8sboot-machines.json").write_text(json.dumps(metadata))
    return project


def test_environment_uses_private_addresses_never_nat(fake_vagrant: Path, tmp_path: Path) -> None:
    environment = read_environment()
    hosts = environment.spec_hosts()
    assert [(h["name"], h["address"], h.get("nodeIP"), h["roles"]) for h in hosts] == [
        ("cp1", "127.0.0.1", "192.168.56.11", ["control-plane"]),
        ("w1", "127.0.0.1", "192.168.56.101", ["worker"]),
        ("w2", "127.0.0.1", "192.168.56.102", ["worker"]),
    ]
    assert hosts[0]["ssh"] == {
        "user": "vagrant",
        "port": 2222,
        "key": "/home/me/proj/.vagrant/machines/cp1/virtualbox/private_key",
    }
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["status --machine-readable", "ssh-config cp1 w1 w2"]  # one call each


def test_inventory_from_vagrant_without_a_cluster_file(fake_vagrant: Path) -> None:
    result = CliRunner().invoke(cli, ["inventory", "--vagrant", "-o", "json"])
    assert result.exit_code == 0, result.output
    inventory = json.loads(result.output)
    assert inventory["control_plane"]["hosts"] == ["cp1"]
    assert inventory["workers"]["hosts"] == ["w1", "w2"]
    assert inventory["_meta"]["hostvars"]["w1"]["node_ip"] == "192.168.56.101"
    assert inventory["_meta"]["hostvars"]["w1"]["ansible_port"] == 2200
    assert inventory["_meta"]["hostvars"]["w1"]["ansible_become"] is True


def test_init_from_vagrant_writes_a_valid_spec(fake_vagrant: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["init", "--from-vagrant", "--name", "lab"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((fake_vagrant / "cluster.yaml").read_text())
    assert data["hosts"][1] == {
        "name": "w1",
        "address": "127.0.0.1",
        "roles": ["worker"],
        "nodeIP": "192.168.56.101",
        "ssh": {
            "user": "vagrant",
            "port": 2200,
            "key": "/home/me/proj/.vagrant/machines/w1/virtualbox/private_key",
        },
    }
    # Valid but for the key files, which this fake Vagrant only names.
    checked = runner.invoke(cli, ["validate"])
    assert checked.exit_code == 2
    problems = checked.output.strip().splitlines()
    assert len(problems) == 3 and all(".ssh.key: " in p and "no such file" in p for p in problems)


def test_stopped_machines_are_named(fake_vagrant: Path, tmp_path: Path) -> None:
    (tmp_path / "status.txt").write_text(STATUS)
    with pytest.raises(UserError, match="Vagrant machines not running: w2; run `vagrant up`"):
        read_environment().spec_hosts()


def test_loading_never_starts_a_machine_and_up_starts_the_stopped_ones(
    fake_vagrant: Path, tmp_path: Path
) -> None:
    (tmp_path / "status.txt").write_text(STATUS)  # w2 is stopped
    for args in (
        ["plan", "--vagrant"],
        ["up", "--vagrant", "--dry-run"],
        ["validate", "--vagrant"],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "Vagrant machines not running: w2" in result.output
    assert not [c for c in (tmp_path / "calls").read_text().splitlines() if c.startswith("up")]
    app = App(vagrant=True)
    app.start_machines()
    assert "up --parallel" in (tmp_path / "calls").read_text().splitlines()
    assert [h.name for h in app.cluster().hosts] == ["cp1", "w1", "w2"]


def test_no_metadata_and_loopback_ssh_is_refused(fake_vagrant: Path) -> None:
    (fake_vagrant / ".vagrant" / "k8sboot-machines.json").unlink()
    with pytest.raises(UserError, match="publishes no private address"):
        read_environment().spec_hosts()


def test_no_vagrantfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAGRANT_CWD", raising=False)
    result = CliRunner().invoke(cli, ["inventory", "--vagrant"])
    assert result.exit_code == 2
    assert result.output.startswith("error: no Vagrantfile in")


def test_vagrant_errors_are_one_readable_line(fake_vagrant: Path, tmp_path: Path) -> None:
    locked = (
        "1795451875,,error-exit,Vagrant::Errors::MachineLocked,Vagrant can't use the "
        "requested machine because it is locked!\\nName: w1\n"
    )
    (tmp_path / "status.txt").write_text(locked)
    script = tmp_path / "bin" / "vagrant"
    script.write_text(script.read_text().replace("status.txt ;;", "status.txt; exit 1 ;;"))
    with pytest.raises(
        MachineError,
        match=r"failed \(exit 1\): Vagrant can't use the requested "
        r"machine because it is locked! Name: w1$",
    ):
        read_environment()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["status --machine-readable"] * 2  # read-only: tried twice


@pytest.mark.parametrize("name", ["e1", "db2", "cafe"])
def test_machine_names_vagrant_reads_as_machine_ids_are_refused(
    fake_vagrant: Path, tmp_path: Path, name: str
) -> None:
    (tmp_path / "status.txt").write_text(STATUS.replace(",w2,", f",{name},"))
    with pytest.raises(UserError, match=rf"machine name '{name}' is all hex digits.*rename"):
        read_environment()
    assert "ssh-config" not in (tmp_path / "calls").read_text()  # refused before use
