"""The command line as an operator meets it: usage errors in one line, help with
examples, listings not cut off, durations in one form, shell completion."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli.app import cli
from k8sboot.cli.common import App

from .conftest import BASE


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)

    def invoke(*args: str, **settings):
        return CliRunner().invoke(
            cli, list(args), prog_name="k8sboot", catch_exceptions=False, **settings
        )

    return invoke


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["up", "--foo"], "error: No such option '--foo' (see k8sboot up --help)"),
        (["node", "cordon"], "error: Missing argument 'NODE' (see k8sboot node cordon --help)"),
        (
            ["validate", "-o", "xml"],
            "error: Invalid value for '-o' / '--output': 'xml' is not one of 'text', 'json' "
            "(see k8sboot validate --help)",
        ),
        (["etcd", "nope"], "error: No such command 'nope' (see k8sboot etcd --help)"),
    ],
)
def test_a_usage_error_is_one_line_naming_what_to_fix(run, args: list[str], line: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""


def test_a_usage_error_under_detailed_exitcode_is_one_line_too(run) -> None:
    result = run("plan", "--detailed-exitcode", "--foo")
    assert result.exit_code == 4
    assert result.stderr.splitlines() == ["error: No such option '--foo' (see k8sboot plan --help)"]


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """Every command and group, with the words that call it."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


TIMEOUT_LIKE = re.compile(r"timeout|ttl|pause|interval|wait")


def test_every_timeout_like_option_takes_a_duration() -> None:
    found = {
        f"{' '.join(words)} {option.opts[-1]}": type(option.type).__name__
        for words, command in _commands()
        for option in command.params
        if TIMEOUT_LIKE.search(option.name or "")
    }
    assert found  # --timeout, --wait-timeout, --pause at least
    assert {k: v for k, v in found.items() if v != "Duration"} == {}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return path


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The options each command hands the pipeline, instead of running it."""
    seen: list[dict] = []

    def record(app, workflow, cluster, **options):
        seen.append({"workflow": workflow, **options})

    monkeypatch.setattr(App, "run", record)
    return seen


@pytest.mark.parametrize(
    ("given", "seconds"), [("1h30m", 5400.0), ("90s", 90.0), ("10m", 600.0), ("600", 600.0)]
)
def test_durations_take_one_form(run, spec: Path, runs: list[dict], given, seconds) -> None:
    assert run("up", "--wait-timeout", given).exit_code == 0
    assert run("node", "drain", "w1", "--timeout", given).exit_code == 0
    assert run("etcd", "defrag", "--pause", given).exit_code == 0
    up, drain, defrag = runs
    assert up["wait_timeout"] == seconds
    (drain_step,) = drain["workflow"].steps
    assert drain_step.options.timeout == seconds
    (defrag_step,) = defrag["workflow"].steps
    assert defrag_step.pause == seconds


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["up", "--wait-timeout", "10x"], "'--wait-timeout'"),
        (["node", "drain", "w1", "--timeout", "30m1h"], "'--timeout'"),
        (["etcd", "defrag", "--pause", "soon"], "'--pause'"),
        (["upgrade", "--wait-timeout", "0"], "'--wait-timeout'"),
    ],
)
def test_a_bad_duration_is_one_line_naming_the_option_and_the_form(
    run, spec: Path, runs: list[dict], args: list[str], option: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: Invalid value for {option}: ")
    assert "like 90s, 10m or 1h30m (a bare number is seconds)" in line
    assert runs == []
