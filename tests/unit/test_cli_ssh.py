"""`k8sboot ssh NODE [-- COMMAND]`: OpenSSH's client with k8sboot's settings and pinned
host keys, exec'd (no machines: the SSH connection that pins the key is answered here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli.app import cli
from k8sboot.transport import Connection

from .conftest import BASE


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["hosts"][1]["ssh"] = {"user": "ops", "port": 2222, "key": "keys/w1"}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(data))

    def invoke(*args: str):
        return CliRunner().invoke(cli, ["ssh", *args], catch_exceptions=False)

    return invoke


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """What would have been exec'd, after the connections opened (recorded as `open NAME`)."""
    seen: list = []

    def opened(self: Connection, attempts: int = 3) -> Connection:
        seen.append(f"open {self.name}")
        return self

    monkeypatch.setattr(Connection, "open", opened)
    monkeypatch.setattr(os, "execvp", lambda file, argv: seen.append([file, *argv[1:]]))
    return seen


def option(argv: list[str], name: str) -> str:
    return next(
        argv[i + 1] for i, a in enumerate(argv) if a == "-o" and argv[i + 1].startswith(name)
    )


def test_a_login_shell_with_the_pinned_host_keys(run, execs, tmp_path: Path) -> None:
    result = run("cp1")
    assert result.exit_code == 0, result.output
    opened, argv = execs
    assert opened == "open cp1"  # the key is pinned (or checked) as every command does
    assert argv[0] == "ssh" and argv[-2:] == ["--", "10.0.0.11"]
    assert "-t" not in argv and "-T" not in argv
    known_hosts = tmp_path / ".k8sboot/test/known_hosts"
    assert option(argv, "UserKnownHostsFile=") == f'UserKnownHostsFile="{known_hosts}"'
    assert option(argv, "StrictHostKeyChecking=") == "StrictHostKeyChecking=yes"
    assert option(argv, "BatchMode=") == "BatchMode=yes"
    assert argv[argv.index("-p") + 1] == "22" and argv[argv.index("-l") + 1] == "root"


def test_a_command_with_the_hosts_own_settings(run, execs, tmp_path: Path) -> None:
    result = run("w1", "--", "sudo", "crictl", "ps", "-a")
    assert result.exit_code == 0, result.output
    opened, argv = execs
    assert opened == "open w1"
    assert argv[-6:] == ["--", "10.0.0.21", "sudo", "crictl", "ps", "-a"]
    assert "-T" in argv  # stdin is no terminal here
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "ops"
    assert option(argv, "IdentityFile=") == f'IdentityFile="{tmp_path / "keys/w1"}"'


def test_a_terminal_for_a_command_when_asked() -> None:
    from k8sboot.inventory import SSHTarget
    from k8sboot.runlog import RunLog
    from k8sboot.transport import HostKeys

    target = SSHTarget("cp1", "10.0.0.11", 22, "root", None)
    connection = Connection(
        target, HostKeys(Path("/nonexistent/known_hosts"), "strict"), RunLog(None)
    )
    assert connection.openssh_command(["top"], tty=True)[1] == "-t"
    assert connection.openssh_command(["top"], tty=False)[1] == "-T"


def test_an_unknown_node_is_one_line_naming_the_hosts(run, execs) -> None:
    result = run("cp9")
    assert result.exit_code == 2
    assert result.output == "error: cp9 is not in the cluster file (hosts: cp1, w1)\n"
    assert execs == []


def test_an_unreachable_node_is_one_line(run, tmp_path: Path, monkeypatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = yaml.safe_load((tmp_path / "cluster.yaml").read_text())
    data["hosts"][0].update(address="127.0.0.1", nodeIP="10.0.0.11", ssh={"port": port})
    data["ssh"] = {"connectTimeout": 2}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(data))
    execs: list = []
    monkeypatch.setattr(os, "execvp", lambda *a: execs.append(a))
    result = run("cp1", "--", "true")
    assert result.exit_code == 1 and execs == []
    assert result.output.startswith(f"error: cp1: cannot reach 127.0.0.1:{port} over SSH")
    assert result.output.count("\n") == 1


def test_ssh_replaces_k8sboot_and_its_exit_code_is_k8sboots(tmp_path: Path) -> None:
    """The real exec: a stand-in `ssh` first on PATH records its arguments and exits 7."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\nexit 7\n')
    (bin_dir / "ssh").chmod(0o755)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(BASE))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "ARGS_FILE": str(tmp_path / "args"),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path]),
    }
    env.pop("K8SBOOT_FILE", None)
    script = (
        "from k8sboot.transport import Connection\n"
        "Connection.open = lambda self, attempts=3: self  # no machine to pin a key of\n"
        "from k8sboot.cli.app import cli\n"
        "cli(['ssh', 'w1', '--', 'exit', '7'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 7, done.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[-4:] == ["--", "10.0.0.21", "exit", "7"]


def test_help_has_examples(run) -> None:
    result = run("--help")
    assert result.exit_code == 0 and "Examples:" in result.output
    assert "k8sboot ssh w1 -- sudo crictl ps" in result.output
