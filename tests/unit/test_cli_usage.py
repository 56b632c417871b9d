"""The command line as an operator meets it: usage errors in one line, help with
examples, listings not cut off, durations in one form, shell completion."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli.app import cli
from k8sboot.cli.common import App
from k8sboot.etcd.stores import open_store
from k8sboot.spec import load_spec

from .builders import START, manifest, stored
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


HOSTS = [
    {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane"]},
    {"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]},
    {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
    {"name": "e1", "address": "10.0.0.31", "roles": ["etcd"]},
]


@pytest.fixture
def external(tmp_path: Path) -> Path:
    """A cluster file away from the working directory, with its catalogue: two backups."""
    path = tmp_path / "elsewhere" / "lab.yaml"
    path.parent.mkdir()
    data = {**BASE, "name": "lab", "hosts": HOSTS, "etcd": {"topology": "external"}}
    data["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    path.write_text(yaml.safe_dump(data))
    store = open_store(load_spec(path).cluster).ensure()
    for name, day in (("lab-1", 1), ("lab-2", 2)):
        stored(store, manifest(name, START.replace(day=day)))
    return path


def complete(run, line: str, env: dict | None = None) -> tuple[list[str], object]:
    """What bash gets for `line` (the last word is the one being completed)."""
    words = line.split(" ")
    result = run(
        env={
            "_K8SBOOT_COMPLETE": "bash_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
            **(env or {}),
        }
    )
    return [item for item in result.stdout.splitlines() if item], result


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("k8sboot node cordon -f {f} ", ["plain,cp1", "plain,cp2", "plain,w1"]),
        ("k8sboot node drain -f {f} c", ["plain,cp1", "plain,cp2"]),
        ("k8sboot node remove -f {f} w", ["plain,w1"]),
        ("k8sboot node add -f {f} ", ["plain,cp1", "plain,cp2", "plain,w1"]),
        ("k8sboot etcd backup -f {f} --member ", ["plain,e1"]),
        (
            "k8sboot etcd restore -f {f} --onto cp1,",
            ["plain,cp1,cp2", "plain,cp1,w1", "plain,cp1,e1"],
        ),
        ("k8sboot etcd verify -f {f} ", ["plain,latest", "plain,lab-1", "plain,lab-2"]),
        ("k8sboot etcd restore -f {f} lab-", ["plain,lab-1", "plain,lab-2"]),
        ("k8sboot etcd verify -f {f} ./backups/", ["file,./backups/"]),
    ],
)
def test_completion_offers_what_the_cluster_file_and_catalogue_name(
    run, external: Path, line: str, offered: list[str]
) -> None:
    got, result = complete(run, line.format(f=external))
    assert result.exit_code == 0
    assert got == offered


def test_completion_reads_the_cluster_file_from_the_environment(run, external: Path) -> None:
    got, _ = complete(run, "k8sboot node cordon ", {"K8SBOOT_FILE": str(external)})
    assert got == ["plain,cp1", "plain,cp2", "plain,w1"]


@pytest.mark.parametrize(
    "line",
    [
        "k8sboot node cordon ",
        "k8sboot etcd verify ",
        "k8sboot etcd restore --onto ",
        "k8sboot node cordon -f nowhere.yaml ",
    ],
)
def test_completion_without_a_cluster_file_offers_nothing_quietly(run, line: str) -> None:
    got, result = complete(run, line)
    assert result.exit_code == 0
    assert got == [] and result.stderr == ""


def test_completion_of_an_invalid_cluster_file_offers_nothing_quietly(run, tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text("hosts: [this is not a cluster]\n")
    got, result = complete(run, "k8sboot node drain ")
    assert result.exit_code == 0
    assert got == [] and result.stderr == ""


ALL = [((), cli), *_commands()]


def _examples(help_text: str) -> list[str]:
    """The example command lines under Examples:, as printed."""
    _, found, rest = help_text.partition("\n  Examples:\n")
    assert found, "no Examples: block"
    lines = []
    for line in rest.splitlines():
        if not line.startswith("    "):
            break
        lines.append(line.strip())
    return lines


def _called(words: list[str]) -> tuple[click.Command, list[str]]:
    command = cli
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


@pytest.mark.parametrize("words", [w for w, _ in ALL], ids=lambda w: " ".join(w) or "k8sboot")
def test_every_help_has_examples_that_parse(run, words: tuple[str, ...]) -> None:
    result = run(*words, "--help")
    assert result.exit_code == 0
    examples = [e for e in _examples(result.stdout) if e.startswith("k8sboot ")]
    assert examples, f"k8sboot {' '.join(words)}: no example runs k8sboot"
    for example in examples:
        line = shlex.split(example.partition("  #")[0])
        for shell in ("&&", ">", "|"):  # the example's k8sboot part only
            line = line[: line.index(shell)] if shell in line else line
        called, rest = _called(line[1:])
        under = {c for w, c in ALL if w[: len(words)] == words}  # itself, or its commands
        assert called in under, example
        called.make_context("k8sboot", rest, obj=App())  # a usage error fails the test


@pytest.mark.parametrize("columns", ["80", "60"])
@pytest.mark.parametrize(
    "words",
    [w for w, c in ALL if isinstance(c, click.Group)],
    ids=lambda w: " ".join(w) or "k8sboot",
)
def test_group_listings_show_each_short_help_whole(run, words, columns: str) -> None:
    group = dict(ALL)[words]
    result = run(*words, "--help", env={"COLUMNS": columns})
    listing = " ".join(result.stdout.partition("\nCommands:\n")[2].split())
    assert listing and "..." not in listing
    for name, command in group.commands.items():
        short = " ".join(command.get_short_help_str().split())
        assert f"{name} {short}" in listing
