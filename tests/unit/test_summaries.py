"""Summaries say everything that was done, under the command's own name: plan is headed
as a plan, down tells of the machines it destroyed, defrag names every member; and node
maintenance says what it cannot do and why (the API cannot be reached, there is no
cluster yet) instead of guessing that the node has not joined."""

from __future__ import annotations

import io
import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot import pipeline
from k8sboot.cli import common
from k8sboot.cli import run as run_commands
from k8sboot.cli.app import cli
from k8sboot.cli.common import App
from k8sboot.etcd import maintenance
from k8sboot.etcd.client import EndpointHealth, EndpointStatus
from k8sboot.facts import SEPARATOR, Facts
from k8sboot.report import TextReporter
from k8sboot.transport import CommandResult
from k8sboot.vagrant import VagrantEnvironment, VagrantMachine
from k8sboot.workflows import etcd_defrag

from .conftest import BASE, load_data
from .factsdata import converged_host, etcd_view, fresh
from .fakes import UnexpectedCommand, scripted
from .hacluster import ha_cluster


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


def _machine(name: str, state: str, roles: tuple[str, ...]) -> VagrantMachine:
    address = {"cp1": "192.168.56.11", "w1": "192.168.56.21"}[name]
    ssh = {"HostName": address, "User": "vagrant"}
    return VagrantMachine(name, state, "virtualbox", roles, address, ssh)


@pytest.mark.parametrize(
    ("state", "reset", "said"),
    [
        ("running", True, "destroyed the Vagrant machines cp1, w1"),
        ("poweroff", False, "destroyed the Vagrant machines cp1, w1"),
        ("not_created", False, "no Vagrant machine to destroy: none was created"),
    ],
)
def test_down_tells_of_the_machines_it_destroyed(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str, reset: bool, said: str
) -> None:
    resets, result = _down(run, tmp_path, monkeypatch, state)
    assert resets == (["reset"] if reset else [])
    assert result.stdout.splitlines()[-1] == f"{said} (in {tmp_path})"


def test_down_tells_it_among_the_json_events(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, result = _down(run, tmp_path, monkeypatch, "running", "-o", "json")
    *_, note, final = (json.loads(line) for line in result.stdout.splitlines())
    assert note["event"] == "note"
    assert note["message"] == f"destroyed the Vagrant machines cp1, w1 (in {tmp_path})"
    assert final["event"] == "run_finished" and final["ok"] is True
    assert result.stderr == ""


def _down(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str, *args: str):
    (tmp_path / "cluster.yaml").unlink()  # the machines are the hosts
    machines = [_machine("cp1", state, ("control-plane",)), _machine("w1", state, ("worker",))]
    environment = VagrantEnvironment(tmp_path, tmp_path / ".vagrant", machines, None)
    vagrant: list[list[str]] = []
    resets: list[str] = []
    monkeypatch.setattr(common, "read_environment", lambda: environment)
    monkeypatch.setattr(run_commands, "find_root", lambda: tmp_path)
    monkeypatch.setattr(run_commands, "run_vagrant", lambda args, *a, **k: vagrant.append(args))
    monkeypatch.setattr(App, "run", lambda app, workflow, *a, **k: resets.append(workflow.name))
    result = run("down", "--vagrant", "--yes", *args)
    assert result.exit_code == 0, result.stderr
    assert vagrant == [["destroy", "-f"]]
    return resets, result


class DefragmentingCtl:
    """etcdctl as the defrag handler asks it: every member healthy, 8 MiB before, 2 after."""

    def __init__(self) -> None:
        self.defragmented: list[str] = []

    def health(self, endpoints: list[str]) -> list[EndpointHealth]:
        return [EndpointHealth(e, True, "2ms", "") for e in endpoints]

    def status(self, endpoints: list[str]) -> list[EndpointStatus]:
        size = 2 if endpoints[0] in self.defragmented else 8
        return [
            EndpointStatus(e, 1, 1, "3.5.21", size * 2**20, 2**20, 9, 9, 2, ()) for e in endpoints
        ]

    def defragment(self, endpoint: str) -> None:
        self.defragmented.append(endpoint)


def test_defrag_names_every_member_it_defragmented(
    base: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cluster = ha_cluster(base)
    cluster.state_dir = tmp_path / "state"
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    nodes = {"items": []}
    transport = scripted(hosts, {"get nodes": f"{json.dumps(nodes)}\n{SEPARATOR}\ncm/cluster-info"})
    ctl = DefragmentingCtl()
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext(transport))
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: Facts(hosts=hosts))
    monkeypatch.setattr(pipeline, "require_ssh_client", lambda: None)
    monkeypatch.setattr(maintenance, "observe", lambda ctx: etcd_view(cluster, leader=2))
    monkeypatch.setattr(maintenance, "ctl_for", lambda *a: ctl)
    progress = io.StringIO()
    pipeline.run(etcd_defrag(0), cluster, TextReporter(stream=progress))
    said = capsys.readouterr().out
    assert len(ctl.defragmented) == 3
    assert "changed: etcd defrag (cp1, cp3, cp2)" in said  # followers first, the leader last
    for member in ("cp1", "cp2", "cp3"):
        assert f"{member}: 8.0 MiB -> 2.0 MiB" in progress.getvalue()


# What kubectl on a control plane says when the API server behind admin.conf is down.
REFUSED = (
    "The connection to the server 10.0.0.11:6443 was refused - did you specify the right "
    "host or port?"
)


def _maintenance(run, monkeypatch: pytest.MonkeyPatch, hosts, kubectl, *args: str):
    """A node command run against these host facts, kubectl answering `kubectl`."""
    transport = scripted(hosts, {"get nodes": kubectl})
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext(transport))
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: Facts(hosts=hosts))
    monkeypatch.setattr(pipeline, "require_ssh_client", lambda: None)
    return run("node", *args)


@pytest.mark.parametrize(
    ("args", "doing"),
    [
        (["cordon", "w1"], "cordon"),
        (["uncordon", "w1"], "uncordon"),
        (["drain", "w1"], "drain"),
        (["remove", "w1", "--yes"], "remove"),
    ],
)
def test_node_maintenance_says_the_api_cannot_be_reached(
    run, base: dict, monkeypatch: pytest.MonkeyPatch, args: list[str], doing: str
) -> None:
    cluster = load_data(base).cluster
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    down = CommandResult("cp1", "kubectl get nodes", 1, b"", REFUSED, 0.1)
    result = _maintenance(run, monkeypatch, hosts, down, *args)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()[-1:]
    assert line.startswith(
        f"error: cannot {doing} w1 (nothing was changed): the API on cp1 does not answer "
        f"({REFUSED})"
    )
    assert "joined" not in result.stderr


def test_node_maintenance_without_a_cluster_says_there_is_no_api(
    run, base: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = load_data(base).cluster
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}  # `up` never ran
    result = _maintenance(run, monkeypatch, hosts, UnexpectedCommand(), "drain", "w1")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: cannot drain w1: no control plane is initialised, so there is no API to ask "
        "(`k8sboot up` brings the cluster up); nothing was changed"
    )


def test_a_node_the_api_does_not_list_has_not_joined(
    run, base: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = load_data(base).cluster
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    nodes = json.dumps({"items": []})  # the API answers: no Node w1
    listed = f"{nodes}\n{SEPARATOR}\nconfigmap/cluster-info"
    result = _maintenance(run, monkeypatch, hosts, listed, "cordon", "w1")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: cannot cordon w1: the API has no Node w1 (it has not joined the cluster, or "
        "was deleted)"
    )
