"""The automation contract of `-o json` (README, "Automation (-o json)"): a command that
runs a workflow streams JSON lines that always end with one `run_finished` (ok,
exit_code, error), on success, on failure, before its workflow could start, and when
interrupted; a read-only command prints one JSON document with `ok`. Keys are
snake_case. Real pipeline, lock and run log; the hosts are the test fakes."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from k8sboot import pipeline, workflows
from k8sboot.actions import Action, OnHost
from k8sboot.cli import certs as certs_command
from k8sboot.cli import common
from k8sboot.cli import etcd as etcd_command
from k8sboot.cli import health as health_command
from k8sboot.cli import run as run_command
from k8sboot.cli.app import cli
from k8sboot.cli.common import RunsWorkflow
from k8sboot.errors import EXIT_INTERRUPTED, MachineError, UserError
from k8sboot.etcd import topology
from k8sboot.etcd.catalogue import LocalStore
from k8sboot.etcd.client import Alarm, EndpointHealth, EndpointStatus, Member, peer_url
from k8sboot.etcd.observe import EtcdView
from k8sboot.etcd.tools import EtcdTools
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import Facts
from k8sboot.health.observe import ClusterObservation, Observations
from k8sboot.health.verdicts import Verdict
from k8sboot.step import Context, Step
from k8sboot.transport import CommandResult

from .builders import START, manifest, stored
from .conftest import BASE
from .factsdata import context
from .fakes import scripted

README = Path(__file__).parents[2] / "README.md"
FINAL_KEYS = {"ok", "exit_code", "error", "changed", "seconds", "dry_run", "pending", "log"}
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")

# Every command that runs a workflow, with what it needs to get there.
WORKFLOW_COMMANDS: dict[str, list[str]] = {
    "up": [],
    "plan": [],
    "reset": ["--yes"],
    "down": ["--vagrant", "--yes"],
    "upgrade": [],
    "node cordon": ["w1"],
    "node uncordon": ["w1"],
    "node drain": ["w1"],
    "node remove": ["w1", "--yes"],
    "node add": ["w1"],
    "certs renew": [],
    "etcd backup": [],
    "etcd snapshot": [],
    "etcd verify": ["latest"],
    "etcd restore": ["latest", "--yes"],
    "etcd defrag": [],
    "etcd schedule": [],
    "etcd pull": [],
    "etcd alarms": ["--disarm"],
}


# -- a workflow of the test's own, run by the real pipeline -------------------------------


@dataclass(frozen=True)
class Work(OnHost):
    fails: bool = False
    interrupts: Callable[[], None] | None = None

    def describe(self) -> str:
        return f"work on {self.host}"


@handles(Work)
def _work(executor: Executor, action: Work) -> Outcome:
    executor.progress(action.host, "working")
    if action.interrupts is not None:
        action.interrupts()
    if action.fails:
        raise MachineError(f"{action.host}: it broke")
    return Outcome((action.host,))


class Working(Step):
    title = "working"

    def __init__(self, action: Work) -> None:
        self.action = action

    def plan(self, ctx: Context) -> list[Action]:
        return [self.action]


FACTORIES = [
    name
    for name, value in vars(workflows).items()
    if inspect.isfunction(value)
    and inspect.signature(value).return_annotation in ("Workflow", pipeline.Workflow)
]


@pytest.fixture
def cli_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run k8sboot in tmp_path against fakes; `workflow(action)` sets what every
    workflow command runs."""
    monkeypatch.chdir(tmp_path)
    for name in ("K8SBOOT_FILE", "K8SBOOT_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(BASE))
    monkeypatch.setattr(pipeline, "require_ssh_client", lambda: None)
    transport = scripted(["cp1", "w1"])
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext(transport))
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: Facts(hosts={}))
    monkeypatch.setattr(run_command, "find_root", lambda: tmp_path)  # down --vagrant
    monkeypatch.setattr(common, "read_environment", lambda: None)  # the hosts of the file
    monkeypatch.setattr(run_command, "run_vagrant", lambda *a, **k: "")
    store = LocalStore(tmp_path / ".k8sboot" / "test" / "backups").ensure()
    stored(store, manifest("test-1", START, cluster="test"))

    def workflow(action: Work) -> None:
        made = pipeline.Workflow("testing", [Working(action)], preflight=False)
        for name in FACTORIES:
            monkeypatch.setattr(workflows, name, lambda *a, **k: made)

    workflow(Work("cp1"))

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    invoke.workflow = workflow  # type: ignore[attr-defined]
    return invoke


def events(stdout: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in stdout.splitlines()]
    for event in found:
        assert {"event", "time"} <= set(event), event
        assert all(SNAKE.match(key) for key in event), event
    return found


def final(stdout: str) -> dict[str, Any]:
    found = events(stdout)
    assert [e["event"] for e in found].count("run_finished") == 1, found
    assert found[-1]["event"] == "run_finished", found
    assert set(found[-1]) == {"event", "time", *FINAL_KEYS}
    return found[-1]


def leaf_commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator:
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaf_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_the_workflow_commands_are_those_listed_here() -> None:
    marked = {path for path, command in leaf_commands(cli) if isinstance(command, RunsWorkflow)}
    assert marked == set(WORKFLOW_COMMANDS)


@pytest.mark.parametrize("path", sorted(WORKFLOW_COMMANDS))
def test_a_workflow_that_succeeds_streams_events_ending_with_run_finished(
    cli_run, path: str
) -> None:
    result = cli_run(*path.split(), *WORKFLOW_COMMANDS[path], "-o", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    found = events(result.stdout)
    assert found[0]["event"] == "run_started" and found[0]["workflow"] == "testing"
    end = final(result.stdout)
    assert (end["ok"], end["exit_code"], end["error"]) == (True, 0, None)
    dry_run = path == "plan"
    if not dry_run:
        progress = next(e for e in found if e["event"] == "progress")
        assert (progress["step"], progress["host"]) == ("working", "cp1")
    assert end["dry_run"] is dry_run and end["pending"] == 1
    assert end["changed"] == ({} if dry_run else {"working": ["cp1"]})
    assert Path(end["log"]).read_text().endswith("k8sboot: exit code 0\n")


@pytest.mark.parametrize("path", sorted(WORKFLOW_COMMANDS))
def test_a_workflow_that_fails_ends_with_run_finished_and_one_error_line(
    cli_run, path: str
) -> None:
    cli_run.workflow(Work("cp1", fails=True))
    result = cli_run(*path.split(), *WORKFLOW_COMMANDS[path], "-o", "json")
    expected = 0 if path == "plan" else 1  # a dry run carries nothing out
    assert result.exit_code == expected, result.output
    end = final(result.stdout)
    if expected == 0:
        return
    assert (end["ok"], end["exit_code"], end["error"]) == (False, 1, "cp1: it broke")
    assert "step_failed" in [e["event"] for e in events(result.stdout)]
    assert result.stderr == "error: cp1: it broke\n"
    assert Path(end["log"]).read_text().endswith("k8sboot: exit code 1\n")


def _no_vagrantfile() -> Path:
    raise UserError("no Vagrantfile in /nowhere or above; run k8sboot where your Vagrantfile is")


@pytest.mark.parametrize("path", sorted(WORKFLOW_COMMANDS))
def test_a_workflow_command_failing_before_its_workflow_still_ends_its_stream(
    cli_run, tmp_path: Path, monkeypatch, path: str
) -> None:
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump({**BASE, "name": "Not A Name"}))
    monkeypatch.setattr(run_command, "find_root", _no_vagrantfile)  # down goes on without
    result = cli_run(*path.split(), *WORKFLOW_COMMANDS[path], "-o", "json")
    assert result.exit_code == 2, result.output
    line = result.stderr.splitlines()[-1]  # down says it skips the reset first
    assert line.startswith("error: ")
    (end,) = events(result.stdout)
    assert end == {
        **end,
        "event": "run_finished",
        "ok": False,
        "exit_code": 2,
        "error": line.removeprefix("error: "),
        "log": None,
        "dry_run": None,
    }


@pytest.mark.parametrize(
    "args",
    [
        ["up", "-o", "json", "--no-such-option"],
        ["node", "drain", "w1", "--timeout", "soon", "--output=json"],
        ["reset", "-ojson"],  # refused in the command's body: no --yes
    ],
)
def test_a_refused_command_line_ends_the_stream_it_asked_for(cli_run, args: list[str]) -> None:
    result = cli_run(*args)
    assert result.exit_code == 2
    (end,) = events(result.stdout)
    assert end["event"] == "run_finished" and end["exit_code"] == 2 and end["error"]


def test_a_run_refused_by_the_lock_ends_its_stream(cli_run, tmp_path: Path) -> None:
    from k8sboot.lock import ClusterLock

    state = tmp_path / ".k8sboot" / "test"
    with ClusterLock(state / "lock", "up"):
        result = cli_run("up", "-o", "json")
    assert result.exit_code == 3
    end = final(result.stdout)
    assert end["exit_code"] == 3 and "is running `k8sboot up`" in end["error"]
    assert len(result.stderr.splitlines()) == 1


def test_several_workflows_of_one_command_end_with_one_run_finished(cli_run, monkeypatch):
    from k8sboot.cluster import upgrade

    monkeypatch.setattr(upgrade, "walk", lambda ctx: ["1.32.4", "1.33.1"])
    monkeypatch.setattr(upgrade, "at_version", lambda cluster, version: cluster)
    monkeypatch.setattr(
        "k8sboot.cli.upgrade.looking", lambda *a, **k: nullcontext(None), raising=True
    )
    result = cli_run("upgrade", "--walk", "-o", "json")
    assert result.exit_code == 0, result.output
    found = events(result.stdout)
    assert [e["event"] for e in found].count("run_started") == 2
    end = final(result.stdout)
    assert end["ok"] is True and end["pending"] == 2


# -- interruption -------------------------------------------------------------------------


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the signal arrives at once; the test fails, slowly, if it is not handled


class ReachedTheTest(Exception):
    """SIGTERM that k8sboot did not handle."""


@pytest.mark.parametrize(
    ("interrupt", "said"), [(_ctrl_c, "interrupted"), (_sigterm, "terminated")]
)
def test_an_interrupted_run_ends_its_stream_and_log_with_exit_code_130(
    cli_run, tmp_path: Path, interrupt, said: str
) -> None:
    def unhandled(*_: object) -> None:
        raise ReachedTheTest

    previous = signal.signal(signal.SIGTERM, unhandled)  # never let SIGTERM end pytest
    try:
        cli_run.workflow(Work("cp1", interrupts=interrupt))
        result = cli_run("up", "-o", "json")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    end = final(result.stdout)
    assert (end["ok"], end["exit_code"]) == (False, EXIT_INTERRUPTED)
    assert end["error"] == f"{said}; run the same command again to carry on"
    assert result.stderr.splitlines()[-1] == end["error"]
    assert not (tmp_path / ".k8sboot" / "test" / "lock").exists()
    assert Path(end["log"]).read_text().endswith(f"k8sboot: exit code {EXIT_INTERRUPTED}\n")
    assert signal.getsignal(signal.SIGTERM) is previous


# -- read-only commands: one document -----------------------------------------------------


def _etcd_view(cluster, down: bool = False, alarms: tuple[str, ...] = ()) -> EtcdView:
    (host,) = topology.members(cluster)
    endpoint = topology.endpoint(host)
    member = Member(1, host.name, (peer_url(host.ip),), (endpoint,), False)
    status = EndpointStatus(endpoint, 1, 1, "3.5.21", 4096, 4096, 9, 9, 2, ())
    health = EndpointHealth(endpoint, not down, "2ms", "" if not down else "deadline exceeded")
    return EtcdView(
        host,
        None,
        EtcdTools("3.5.21", "3.5.21", True),
        [] if down else [member],
        {} if down else {1: status},
        {endpoint: health},
        [Alarm(1, a) for a in alarms],
    )


def _certificates(expires: str) -> dict[str, Any]:
    return {
        "kind": "CertificateExpirationInfo",
        "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
        "certificates": [{"name": "apiserver", "expirationDate": expires, "caName": "ca"}],
        "certificateAuthorities": [{"name": "ca", "expirationDate": expires}],
    }


def _fail(command: str) -> CommandResult:
    return CommandResult("cp1", command, 1, b"", "kubeadm: boom", 0.0)


@contextmanager
def _looking(cluster, *_: object, **__: object) -> Iterator[Context]:
    assert cluster.state_dir is not None
    yield context(cluster, {}, cluster.state_dir)


def _machines(monkeypatch: pytest.MonkeyPatch, ok: bool) -> None:
    """What the read-only commands that look at machines see, healthy or not."""
    monkeypatch.setattr(etcd_command, "looking", _looking)
    monkeypatch.setattr(
        etcd_command,
        "observe",
        lambda ctx, **_: _etcd_view(ctx.cluster, down=not ok, alarms=() if ok else ("NOSPACE",)),
    )
    expires = "2099-01-01T00:00:00Z" if ok else datetime.now(UTC).isoformat()
    answer = _certificates(expires)
    transport = scripted(["cp1", "w1"], {"check-expiration": answer})
    monkeypatch.setattr(certs_command, "read_only", lambda *a: nullcontext(transport))
    monkeypatch.setattr(health_command, "read_only", lambda *a: nullcontext(transport))
    seen = Observations({}, ClusterObservation(), datetime.now(UTC), 0.5)
    monkeypatch.setattr(health_command, "observe", lambda cluster, transport: seen)
    verdict = Verdict("ssh", "cp1", "ok" if ok else "fail", "" if ok else "cannot reach")
    monkeypatch.setattr(health_command, "judge", lambda *a: [verdict])


READ_ONLY: dict[str, list[str]] = {
    "validate": [],
    "render": ["--out", "out"],
    "inventory": [],
    "health": [],
    "certs check": [],
    "etcd health": [],
    "etcd status": [],
    "etcd members": [],
    "etcd alarms": [],
    "etcd list": [],
}


def test_the_read_only_commands_are_the_others_with_json_output() -> None:
    with_json = {
        path
        for path, command in leaf_commands(cli)
        for param in command.params
        if param.name == "output" and "json" in getattr(param.type, "choices", ())
    }
    assert with_json - set(WORKFLOW_COMMANDS) | {"etcd alarms"} == set(READ_ONLY)


def _document(result) -> dict[str, Any]:
    document = json.loads(result.stdout)  # one document, not lines
    assert isinstance(document, dict) and result.stdout.startswith("{\n")
    if "_meta" not in document:  # but Ansible's form of an inventory
        for key in _keys(document):
            assert SNAKE.match(key), key
    return document


def _keys(document: dict[str, Any]) -> Iterator[str]:
    """The document's own keys and those of the records in its lists (not the keys of
    maps keyed by data: host names, steps)."""
    for key, value in document.items():
        yield key
        for item in value if isinstance(value, list) else ():
            if isinstance(item, dict):
                yield from _keys(item)


@pytest.mark.parametrize("ok", [True, False])
@pytest.mark.parametrize("path", sorted(READ_ONLY))
def test_a_read_only_command_prints_one_document(
    cli_run, monkeypatch, tmp_path: Path, path: str, ok: bool
) -> None:
    _machines(monkeypatch, ok)
    if not ok and path in ("validate", "render", "inventory"):
        (tmp_path / "cluster.yaml").write_text(yaml.safe_dump({**BASE, "name": "Not A Name"}))
    if not ok and path == "etcd list":
        (tmp_path / ".k8sboot" / "test" / "backups" / "test-1.db").unlink()
    result = cli_run(*path.split(), *READ_ONLY[path], "-o", "json")
    document = _document(result)
    if path == "inventory" and ok:  # Ansible's dynamic inventory form, as Ansible reads it
        assert result.exit_code == 0 and set(document) >= {"_meta", "all"}
        return
    assert document["ok"] is ok and (result.exit_code == 0) is ok, result.output
    if not ok and path in ("render", "inventory"):  # no document of its own: the error's
        (line,) = result.stderr.splitlines()
        assert document == {"ok": False, "exit_code": 2, "error": line.removeprefix("error: ")}


def test_a_read_only_command_that_cannot_start_prints_the_error_as_its_document(
    cli_run, tmp_path: Path
) -> None:
    for path in ("health", "certs check", "etcd health", "etcd list"):
        result = cli_run(*path.split(), "-o", "json", "-f", "missing.yaml")
        assert result.exit_code == 2
        document = _document(result)
        assert document["ok"] is False and document["exit_code"] == 2
        assert document["error"].startswith("missing.yaml: no such file")


# -- documented -------------------------------------------------------------------------


def test_the_readme_documents_every_event() -> None:
    section = README.read_text().split("## Automation (-o json)", 1)[1].split("\n## ", 1)[0]
    source = (Path(__file__).parents[2] / "k8sboot" / "report.py").read_text()
    emitted = set(re.findall(r'self\._emit\(\s*"(\w+)"', source))
    assert emitted >= {"run_started", "progress", "run_finished"}
    for event in emitted:
        assert f"`{event}`" in section, event
    for key in FINAL_KEYS:
        assert f"`{key}`" in section, key
