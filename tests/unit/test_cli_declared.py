"""The command line's surface: every command's options where operators put them, --help,
--debug, and the exit codes the README documents (no machines)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from k8sboot import errors, pipeline
from k8sboot.cli.app import cli
from k8sboot.errors import MachineError, UnsafeError
from k8sboot.report import JsonReporter, TextReporter

from .conftest import BASE

README = Path(__file__).parents[2] / "README.md"

SHARED = ["--debug", "--file", "--output", "--vagrant", "--verbose", "-f", "-o", "-v"]
NO_OUTPUT = ["--debug", "--file", "--vagrant", "--verbose", "-f", "-v"]
# Every command's options and arguments as they were before the command line was declared
# once: none may go missing, move, or appear.
SURFACE: dict[str, list[str]] = {
    "certs check": [*SHARED, "--warn-days"],
    "certs renew": [*SHARED, "--dry-run"],
    "down": [*SHARED, "--yes", "-y"],
    "etcd age-identity": [*NO_OUTPUT, "PATH"],
    "etcd alarms": [*SHARED, "--disarm"],
    "etcd backup": [*SHARED, "--dry-run", "--member"],
    "etcd defrag": [*SHARED, "--dry-run", "--pause"],
    "etcd health": SHARED,
    "etcd keygen": ["--debug", "--verbose", "-v", "PATH"],
    "etcd list": [*SHARED, "--check"],
    "etcd members": SHARED,
    "etcd pull": [*SHARED, "--dry-run"],
    "etcd restore": [
        *SHARED,
        *["--dry-run", "--onto", "--rollback", "--wait-timeout", "--without-revision-bump"],
        *["--yes", "-y", "BACKUP"],
    ],
    "etcd schedule": [*SHARED, "--dry-run"],
    "etcd snapshot": [*SHARED, "--dry-run", "--member"],
    "etcd status": SHARED,
    "etcd verify": [*SHARED, "BACKUP"],
    "health": [*SHARED, "--warn-days"],
    "init": [
        *["--addresses", "--control-planes", "--debug", "--endpoint", "--file", "--force"],
        *["--from-vagrant", "--kubernetes-version", "--name", "--ssh-key", "--ssh-user"],
        *["--verbose"],
        *["--workers", "-f", "-v"],
    ],
    "inventory": SHARED,
    "kubeconfig": [*NO_OUTPUT, "--group", "--out", "--ttl", "--user"],
    "node add": [*SHARED, "--wait-timeout", "NODE"],
    "node cordon": [*SHARED, "NODE"],
    "node drain": [*SHARED, "--delete-emptydir-data", "--dry-run", "--force", "--timeout", "NODE"],
    "node remove": [
        *SHARED,
        *["--delete-emptydir-data", "--dry-run", "--force", "--timeout", "--yes", "-y", "NODE"],
    ],
    "node uncordon": [*SHARED, "NODE"],
    "plan": [*SHARED, "--detailed-exitcode"],
    "render": [*SHARED, "--out"],
    "reset": [*SHARED, "--purge-packages", "--yes", "-y"],
    "ssh": [*NO_OUTPUT, "COMMAND", "NODE"],
    "up": [*SHARED, "--dry-run", "--wait-timeout"],
    "upgrade": [
        *SHARED,
        "--delete-emptydir-data",
        "--dry-run",
        "--max-unavailable",
        "--timeout",
        "--wait-timeout",
        "--walk",
    ],
    "validate": SHARED,
}


def leaf_commands(command: click.Command, path: tuple[str, ...] = ()):
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaf_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def every_command(command: click.Command, path: tuple[str, ...] = ()):
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from every_command(sub, (*path, name))


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    for name in ("K8SBOOT_FILE", "K8SBOOT_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**BASE, "name": "other"}))

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """pipeline.run recorded instead of run."""
    seen: list[dict] = []

    def record(workflow, cluster, reporter, **options):
        seen.append({"workflow": workflow, "cluster": cluster, "reporter": reporter, **options})
        return pipeline.RunResult(pending=1)

    monkeypatch.setattr(pipeline, "run", record)
    return seen


def test_every_command_keeps_its_options() -> None:
    surface = {
        path: sorted(
            [o for p in command.params for o in (*p.opts, *p.secondary_opts) if o[0] == "-"]
            + [p.name.upper() for p in command.params if isinstance(p, click.Argument)]
        )
        for path, command in leaf_commands(cli)
    }
    assert surface == {path: sorted(names) for path, names in SURFACE.items()}


@pytest.mark.parametrize("path", [" ".join(p) for p in every_command(cli)])
def test_every_command_has_help(run, path: str) -> None:
    result = run(*path.split(), "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {path}".rstrip() + " [OPTIONS]")


@pytest.mark.parametrize(
    "args",
    [
        ["up", "-f", "other.yaml", "-o", "json", "-vv"],
        ["up", "-vv", "--output", "json", "--file", "other.yaml"],
        ["node", "cordon", "w1", "-o", "json", "-f", "other.yaml", "-v", "-v"],
        ["node", "cordon", "-f", "other.yaml", "-vv", "w1", "-o", "json"],
        ["etcd", "defrag", "--verbose", "-o", "json", "--pause", "0", "-vf", "other.yaml"],
    ],
)
def test_shared_options_count_wherever_they_stand_after_the_command(
    run, runs: list[dict], args: list[str]
) -> None:
    assert run(*args).exit_code == 0
    (seen,) = runs
    assert seen["cluster"].name == "other"
    assert isinstance(seen["reporter"], JsonReporter)


def test_verbosity_and_text_output_reach_the_reporter(run, runs: list[dict]) -> None:
    assert run("node", "uncordon", "-vvv", "w1").exit_code == 0
    (seen,) = runs
    assert seen["cluster"].name == "test"
    assert isinstance(seen["reporter"], TextReporter) and seen["reporter"].verbose == 3


def test_vagrant_after_the_command_takes_the_hosts_from_vagrant(run, runs: list[dict]) -> None:
    result = run("node", "cordon", "w1", "--vagrant")
    assert result.exit_code == 2 and "no Vagrantfile" in result.output and not runs


def test_a_spec_file_from_the_environment(run, runs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8SBOOT_FILE", "other.yaml")
    assert run("up", "--dry-run").exit_code == 0
    assert runs[0]["cluster"].name == "other" and runs[0]["dry_run"] is True


def boom(*_: object, **__: object) -> None:
    raise RuntimeError("boom")


def test_an_unexpected_error_is_one_line_without_debug(run, monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "run", boom)
    result = run("up")
    assert result.exit_code == errors.EXIT_FAILURE
    assert result.output == (
        "internal error: RuntimeError: boom (run again with --debug for the traceback)\n"
    )


@pytest.mark.parametrize("debug", [["--debug"], ["-v", "--debug", "-o", "json"]])
def test_debug_after_the_command_lets_the_traceback_through(run, monkeypatch, debug) -> None:
    monkeypatch.setattr(pipeline, "run", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run("up", *debug)


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_debug_from_the_environment(run, monkeypatch, value: str) -> None:
    monkeypatch.setattr(pipeline, "run", boom)
    monkeypatch.setenv("K8SBOOT_DEBUG", value)
    with pytest.raises(RuntimeError, match="boom"):
        run("up")


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_debug_off_in_the_environment(run, monkeypatch, value: str) -> None:
    monkeypatch.setattr(pipeline, "run", boom)
    monkeypatch.setenv("K8SBOOT_DEBUG", value)
    assert run("up").exit_code == errors.EXIT_FAILURE


def test_debug_as_the_value_of_another_option_is_no_debug(run) -> None:
    """`--debug` is an option, not a word anywhere in argv: as the file name it is a file
    that does not exist, said in one line."""
    result = run("validate", "-f", "--debug")
    assert result.exit_code == errors.EXIT_USAGE
    assert len(result.output.splitlines()) == 1 and "--debug" in result.output


def readme_exit_codes() -> dict[int, str]:
    section = README.read_text().split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return {
        int(match[1]): match[2]
        for match in re.finditer(r"^\| (\d+) \| (.+) \|$", section, flags=re.MULTILINE)
    }


def test_the_readme_documents_exactly_the_exit_codes_of_errors_py() -> None:
    documented = readme_exit_codes()
    assert set(documented) == {code for code, _ in errors.EXIT_CODES}
    assert errors.EXIT_PENDING == 2, "as Terraform's plan -detailed-exitcode"
    assert errors.EXIT_DETAILED_USAGE not in (errors.EXIT_PENDING, errors.EXIT_OK)


def raising(error: BaseException):
    def run(*_: object, **__: object) -> None:
        raise error

    return run


def converged(*_: object, **__: object) -> pipeline.RunResult:
    return pipeline.RunResult(pending=0)


def pending(*_: object, **__: object) -> pipeline.RunResult:
    return pipeline.RunResult(pending=3)


@pytest.mark.parametrize(
    ("constant", "says", "args", "pipeline_run"),
    [
        ("EXIT_OK", "success", ["validate"], None),
        ("EXIT_OK", "success", ["plan", "--detailed-exitcode"], converged),
        ("EXIT_OK", "success", ["plan"], pending),
        ("EXIT_FAILURE", "failure", ["up"], raising(MachineError("w1: it broke"))),
        ("EXIT_FAILURE", "failure", ["plan", "--detailed-exitcode"], raising(MachineError("x"))),
        ("EXIT_USAGE", "bad input", ["validate", "-f", "missing.yaml"], None),
        ("EXIT_USAGE", "bad input", ["up", "--no-such-option"], None),
        ("EXIT_USAGE", "bad input", ["plan", "-f", "missing.yaml"], None),
        ("EXIT_PENDING", "changes pending", ["plan", "--detailed-exitcode"], pending),
        ("EXIT_UNSAFE", "unsafe", ["up"], raising(UnsafeError("quorum"))),
        ("EXIT_DETAILED_USAGE", "bad input", ["plan", "--detailed-exitcode", "-f", "no"], None),
        ("EXIT_DETAILED_USAGE", "bad input", ["plan", "-o", "xml", "--detailed-exitcode"], None),
        ("EXIT_DETAILED_USAGE", "bad input", ["plan", "--detailed-exitcode", "--bad"], None),
        ("EXIT_DETAILED_USAGE", "bad input", ["plan", "--bad", "--detailed-exitcode"], None),
        ("EXIT_INTERRUPTED", "interrupted", ["up"], raising(KeyboardInterrupt())),
    ],
)
def test_each_documented_exit_code_is_the_one_used(
    run, monkeypatch, constant: str, says: str, args: list[str], pipeline_run
) -> None:
    if pipeline_run is not None:
        monkeypatch.setattr(pipeline, "run", pipeline_run)
    code = getattr(errors, constant)
    assert run(*args).exit_code == code
    assert says in readme_exit_codes()[code]
