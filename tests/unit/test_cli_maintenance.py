"""The command line of node maintenance, certificates and health (no machines)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli.app import cli

from .conftest import BASE


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(BASE))

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_the_commands_are_listed(run) -> None:
    commands = run("--help").output.split("Commands:")[1].split()
    assert {"node", "certs", "health"} <= set(commands)
    assert {"cordon", "uncordon", "drain", "remove", "add"} <= set(
        run("node", "--help").output.split("Commands:")[1].split()
    )
    assert {"check", "renew"} <= set(run("certs", "--help").output.split("Commands:")[1].split())


@pytest.mark.parametrize(
    "command",
    [
        ("node", "cordon"),
        ("node", "drain"),
        ("node", "remove"),
        ("node", "add"),
        ("certs", "check"),
        ("certs", "renew"),
        ("health",),
    ],
)
def test_every_command_has_help(run, command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0 and "--file" in result.output


def test_remove_wants_yes_before_anything(run) -> None:
    result = run("node", "remove", "w1")
    assert result.exit_code == 2
    assert "pass --yes to confirm" in result.output


@pytest.mark.parametrize("value", ["soon", "-5", "0", "10d"])
def test_a_bad_timeout_is_a_usage_error(run, value: str) -> None:
    result = run("node", "drain", "w1", "--timeout", value)
    assert result.exit_code == 2 and "is not a duration" in result.output


def test_add_names_the_hosts_of_the_file(run) -> None:
    result = run("node", "add", "w9")
    assert result.exit_code == 2
    assert "w9 is not in the cluster file (hosts: cp1, w1)" in result.output
