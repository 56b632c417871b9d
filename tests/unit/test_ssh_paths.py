"""Paths with spaces and quotes (the cluster's directory, its state directory, the key)
reach OpenSSH as exactly those paths: from Ansible's run, the printed inventory and the
bulk transfers; and so does the way through a bastion, whose own ssh checks its host key
against the same pinned keys. OpenSSH's own reading is the judge: `ssh -G` prints the
configuration it would use and connects nowhere."""

from __future__ import annotations

import json
import re
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


def proxied(read: dict[str, list[str]]) -> dict[str, list[str]]:
    """OpenSSH's configuration of the ssh that the ProxyCommand in `read` runs: expanded
    as OpenSSH expands its %-tokens, split as the shell splits it."""
    tokens = {"h": read["hostname"][0], "p": read["port"][0], "%": "%"}
    command = re.sub("%(.)", lambda token: tokens[token[1]], read["proxycommand"][0])
    program, *args = shlex.split(command)
    assert program == "ssh"
    assert args[args.index("-W") + 1] == f"[{read['hostname'][0]}]:{read['port'][0]}"
    return openssh_reads(args)


BASTION = {"address": "bastion.example.com", "user": "jumper", "port": 2222, "key": "id key"}


def ansibles_ssh_call(tmp_path: Path, monkeypatch, ssh: dict | None = None) -> list[str]:
    """How Ansible calls ssh for cp1 in a run of k8sboot's adapter."""
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
        harness.run(tmp_path, {"cp1": {"ansible_ssh_executable": str(fake_ssh)}}, ssh=ssh)
    return json.loads(calls.read_text().splitlines()[0])


def test_ansible_hands_ssh_the_pinned_known_hosts_and_key(tmp_path: Path, monkeypatch) -> None:
    read = openssh_reads(ansibles_ssh_call(tmp_path, monkeypatch))
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


def _bulk_ssh_reads(cluster) -> tuple[Path, dict[str, list[str]]]:
    """The pinned known_hosts, and what OpenSSH reads from a bulk copy's options to cp1."""
    assert cluster.state_dir is not None
    known_hosts = cluster.state_dir / "known_hosts"
    connection = Connection(
        ssh_target(cluster, cluster.host("cp1")),
        HostKeys(known_hosts, "accept-new"),
        RunLog(None),
    )
    return known_hosts, openssh_reads([*connection._openssh_options(), "10.0.0.11"])


def test_bulk_transfers_hand_ssh_the_pinned_known_hosts_and_key(tmp_path: Path) -> None:
    cluster = harness.awkward_cluster(tmp_path)
    known_hosts, read = _bulk_ssh_reads(cluster)
    assert read["userknownhostsfile"] == [str(known_hosts)]
    assert read["identityfile"] == [str(tmp_path / AWKWARD_DIR / "id key")]


def test_an_option_path_escapes_what_openssh_would_read_otherwise(tmp_path: Path) -> None:
    path = tmp_path / 'a "b" \\c %h  d' / "known_hosts"
    option = f"UserKnownHostsFile={ssh_option_path(path)}"
    assert openssh_reads(["-o", option, "10.0.0.11"])["userknownhostsfile"] == [str(path)]


def test_ansible_goes_through_the_bastion_with_the_pinned_keys(tmp_path: Path, monkeypatch) -> None:
    read = openssh_reads(ansibles_ssh_call(tmp_path, monkeypatch, {"bastion": BASTION}))
    cluster_dir = tmp_path / AWKWARD_DIR
    known_hosts = str(cluster_dir / ".k8sboot/test/known_hosts")
    assert read["hostname"] == ["10.0.0.11"]
    bastion = proxied(read)
    assert bastion["hostname"] == ["bastion.example.com"]
    assert (bastion["port"], bastion["user"]) == (["2222"], ["jumper"])
    assert bastion["identityfile"] == [str(cluster_dir / "id key")]
    assert bastion["userknownhostsfile"] == [known_hosts]
    assert bastion["stricthostkeychecking"] == ["accept-new"]


def test_bulk_transfers_go_through_the_bastion_with_the_pinned_keys(tmp_path: Path) -> None:
    cluster = harness.awkward_cluster(tmp_path, {"bastion": BASTION})
    known_hosts, read = _bulk_ssh_reads(cluster)
    bastion = proxied(read)
    assert bastion["hostname"] == ["bastion.example.com"]
    assert (bastion["port"], bastion["user"]) == (["2222"], ["jumper"])
    assert bastion["identityfile"] == [str(tmp_path / AWKWARD_DIR / "id key")]
    assert bastion["userknownhostsfile"] == [str(known_hosts)]
    assert bastion["stricthostkeychecking"] == ["true"]
    assert bastion["batchmode"] == ["yes"]


def test_the_printed_inventory_goes_through_the_bastion(tmp_path: Path, monkeypatch) -> None:
    cluster = harness.awkward_cluster(tmp_path, {"bastion": BASTION})
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    result = CliRunner().invoke(
        cli,
        ["inventory", "-f", str(tmp_path / AWKWARD_DIR / "cluster.yaml"), "-o", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    common = shlex.split(printed["all"]["vars"]["ansible_ssh_common_args"])
    extra = shlex.split(printed["_meta"]["hostvars"]["w1"]["ansible_ssh_extra_args"])
    bastion = proxied(openssh_reads([*common, *extra, "10.0.0.21"]))
    assert bastion["hostname"] == ["bastion.example.com"]
    assert bastion["userknownhostsfile"] == [str(cluster.state_dir / "known_hosts")]
