"""Summaries say everything that was done, under the command's own name: plan is headed
as a plan, down tells of the machines it destroyed, defrag names every member, and node
maintenance says when the API cannot be reached instead of guessing."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot import pipeline
from k8sboot.cli.app import cli
from k8sboot.facts import Facts

from .conftest import BASE
from .factsdata import fresh
from .fakes import scripted


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(BASE))

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), prog_name="k8sboot", catch_exceptions=False)

    return invoke


def test_plan_is_headed_as_a_plan(run, monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = {h["name"]: fresh(h["name"], h["address"]) for h in BASE["hosts"]}
    transport = scripted(hosts)
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext(transport))
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: Facts(hosts=hosts))
    result = run("plan")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == "k8sboot plan: cluster test, 2 hosts"
    assert "k8sboot up" not in result.stderr
    (log,) = (Path(".k8sboot") / "test" / "logs").glob("*.log")
    assert log.name.endswith("-plan.log")
