"""The command line as an operator meets it: usage errors in one line, help with
examples, listings not cut off, durations in one form, shell completion."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from k8sboot.cli.app import cli


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
