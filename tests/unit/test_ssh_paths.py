"""Paths with spaces and quotes (the cluster's directory, its state directory, the key)
reach OpenSSH as exactly those paths: from Ansible's run, the printed inventory and the
bulk transfers. OpenSSH's own reading is the judge: `ssh -G` prints the configuration it
would use and connects nowhere."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot import ansible
from k8sboot.cli.app import cli
from k8sboot.inventory import ssh_option_path, ssh_target
from k8sboot.runlog import RunLog
from k8sboot.transport import Connection, HostKeys

from . import ansible_harness as harness
from .ansible_harness import AWKWARD_DIR


def openssh_reads(args: list[str]) -> dict[str, list[str]]:
    """Each option of OpenSSH's configuration for `args` (ending in the host), its values."""
    done = subprocess.run(
        ["ssh", "-G", "-F", "/dev/null", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    options: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition(" ")
        options.setdefault(name, []).append(value)
    return options


def test_ansible_hands_ssh_the_pinned_known_hosts_and_key(tmp_path: Path, monkeypatch) -> None:
    # A stand-in for ssh that records how Ansible calls it, then fails as an unreachable
    # host does.
    calls = tmp_path / "ssh-calls"
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(calls)!r}, 'a') as out:\n"
        "    out.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(255)\n"
    )
    fake_ssh.chmod(0o755)
    playbooks = harness.playbooks(tmp_path, [{"ansible.builtin.ping": {}}])
    monkeypatch.setattr(ansible, "data_dir", lambda _: playbooks)
    with pytest.raises(ansible.PlaybookFailed):
        harness.run(tmp_path, {"cp1": {"ansible_ssh_executable": str(fake_ssh)}})
    first_call = json.loads(calls.read_text().splitlines()[0])
    read = openssh_reads(first_call)
    cluster_dir = tmp_path / AWKWARD_DIR
    assert read["userknownhostsfile"] == [str(cluster_dir / ".k8sboot/test/known_hosts")]
    assert read["stricthostkeychecking"] == ["accept-new"]
    assert read["identityfile"][0] == str(cluster_dir / "id key")


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_printed_inventory_reads_back_as_the_exact_paths(
    tmp_path: Path, monkeypatch, form: str
) -> None:
    cluster = harness.awkward_cluster(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    result = CliRunner().invoke(
        cli,
        ["inventory", "-f", str(tmp_path / AWKWARD_DIR / "cluster.yaml"), "-o", form],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)  # JSON is YAML too
    if form == "yaml":
        common, hostvars = printed["all"]["vars"], printed["all"]["hosts"]
    else:
        common, hostvars = printed["all"]["vars"], printed["_meta"]["hostvars"]
    # Ansible splits ssh arguments with shlex.split (ansible.plugins.connection.
    # ConnectionBase._split_ssh_args, ansible-core 2.19).
    args = shlex.split(common["ansible_ssh_common_args"])
    assert openssh_reads([*args, "10.0.0.11"])["userknownhostsfile"] == [
        str(cluster.state_dir / "known_hosts")
    ]
    # Ansible quotes the key file itself (-o IdentityFile="..."): the path goes in as is.
    assert hostvars["w1"]["ansible_ssh_private_key_file"] == str(tmp_path / AWKWARD_DIR / "id key")


def test_bulk_transfers_hand_ssh_the_pinned_known_hosts_and_key(tmp_path: Path) -> None:
    cluster = harness.awkward_cluster(tmp_path)
    assert cluster.state_dir is not None
    known_hosts = cluster.state_dir / "known_hosts"
    connection = Connection(
        ssh_target(cluster, cluster.host("cp1")),
        HostKeys(known_hosts, "accept-new"),
        RunLog(None),
    )
    read = openssh_reads([*connection._openssh_options(), "10.0.0.11"])
    assert read["userknownhostsfile"] == [str(known_hosts)]
    assert read["identityfile"] == [str(tmp_path / AWKWARD_DIR / "id key")]


def test_an_option_path_escapes_what_openssh_would_read_otherwise(tmp_path: Path) -> None:
    path = tmp_path / 'a "b" \\c %h  d' / "known_hosts"
    option = f"UserKnownHostsFile={ssh_option_path(path)}"
    assert openssh_reads(["-o", option, "10.0.0.11"])["userknownhostsfile"] == [str(path)]
