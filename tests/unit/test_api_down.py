"""With etcd lost, the API does not answer: that is observed state, not the end of the run.
`up` prepares replacement etcd hosts and `etcd restore` plans; what needs the API says so in
one line; the hosts that cannot be reached are named."""

from __future__ import annotations

import copy
from contextlib import nullcontext
from pathlib import Path

import pytest

from k8sboot import pipeline, session
from k8sboot.cluster.cni import WaitReady
from k8sboot.cluster.kubeadm import KubeadmInit, KubeadmJoin
from k8sboot.errors import MachineError
from k8sboot.etcd import restore as etcd_restore
from k8sboot.etcd import topology
from k8sboot.etcd.backup import SaveSnapshot
from k8sboot.etcd.external import BootstrapEtcd, EtcdMembers, IssueEtcdCerts
from k8sboot.etcd.observe import EtcdView
from k8sboot.etcd.report import health_document
from k8sboot.etcd.restore import StageRestore, StartApiServers
from k8sboot.etcd.tools import EtcdTools
from k8sboot.facts import Facts, ProbeRequest
from k8sboot.kubeadm_node import ETCD_MEMBER_DIR
from k8sboot.render import cni_file
from k8sboot.report import Reporter
from k8sboot.step import sha256
from k8sboot.transport import CommandResult, ReadOnlyHosts, Unreachable
from k8sboot.workflows import etcd_restore as restore_workflow
from k8sboot.workflows import node_cordon, up

from .builders import STORE, manifest
from .conftest import load_data
from .factsdata import EXTERNAL_HOSTS, context, converged_external, converged_host, fresh, ready
from .fakes import FakeTransport, scripted

# What kubectl says when the API server's etcd has no member left (the lab's API server).
NO_ETCD = (
    'Error from server (InternalError): an error on the server ("no etcd endpoint answered '
    '(https://10.0.0.31:2379): timed out") has prevented the request from succeeding'
)
NEW_HOSTS = [{"name": f"e{i}", "address": f"10.0.0.3{i}", "roles": ["etcd"]} for i in (4, 5, 6)]


class Recorder(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.planned: dict[str, list] = {}
        self.failed: dict[str, str] = {}
        self.notes: list[str] = []

    def step_planned(self, title, actions, details) -> None:  # type: ignore[override]
        self.planned[title] = list(actions)

    def step_failed(self, title, error, seconds) -> None:  # type: ignore[override]
        self.failed[title] = str(error)

    def note(self, text: str, planned: bool = False) -> None:
        self.notes.append(text)


def _failing_api(names: list[str]) -> FakeTransport:
    down = CommandResult("cp1", "kubectl get nodes", 1, b"", NO_ETCD, 0.1)
    return scripted(names, {"get nodes": down})


def _replaced(base: dict, tmp_path: Path):
    """The cluster file after the operator replaced the lost e1..e3 by e4..e6, and the
    facts: cp1 and w1 as `up` left them for e1..e3, e4..e6 fresh, e1..e3 gone."""
    base = copy.deepcopy(base)
    base["hosts"] = copy.deepcopy(EXTERNAL_HOSTS)
    base["etcd"] = {"topology": "external"}
    old = converged_external(load_data(base).cluster, tmp_path)  # its CA and certificates
    base["hosts"] = [h for h in base["hosts"] if "etcd" not in h["roles"]] + NEW_HOSTS
    cluster = load_data(base, tmp_path / "cluster.yaml").cluster
    cluster.state_dir = tmp_path / "state"
    hosts = {n: old.facts.hosts[n] for n in ("cp1", "w1")}
    hosts["cp1"].data["stamps"]["cni"] = sha256(cni_file(cluster).content)
    hosts.update({h.name: fresh(h.name, h.ip) for h in cluster.with_role("etcd")})
    return cluster, Facts(hosts=hosts)


def _run(monkeypatch, workflow, cluster, facts: Facts) -> Recorder:
    transport = _failing_api([h.name for h in cluster.hosts])
    monkeypatch.setattr(pipeline, "open_transport", lambda *a: nullcontext(transport))
    monkeypatch.setattr(pipeline, "gather", lambda *a, **k: facts)
    reporter = Recorder()
    try:
        pipeline.run(workflow, cluster, reporter, dry_run=True)
    except MachineError as error:
        reporter.failed["run"] = str(error)
    return reporter


def test_the_api_probe_says_why_the_api_does_not_answer(base: dict, tmp_path: Path) -> None:
    cluster, facts = _replaced(base, tmp_path)
    ctx = context(cluster, facts.hosts, tmp_path)
    transport = _failing_api(["cp1"])
    ctx.view = ReadOnlyHosts(transport)
    session.ask_api(ctx)
    assert not ctx.api.answers and ctx.api.host == "cp1"
    assert "no etcd endpoint answered" in ctx.api.reason
    assert ctx.initialised, "an API that does not answer is no uninitialised control plane"
    (asked,) = transport["cp1"].ran
    assert asked.count("--request-timeout=10s") == 2  # seconds, not kubectl's 30 s


def test_up_prepares_replacement_etcd_hosts_with_the_api_down(
    base: dict, tmp_path: Path, monkeypatch
) -> None:
    cluster, facts = _replaced(base, tmp_path)
    seen = _run(monkeypatch, up(), cluster, facts)
    plan = seen.planned
    assert [a.host for a in plan["etcd certificates"]] == ["e4", "e5", "e6"]
    assert all(isinstance(a, IssueEtcdCerts) for a in plan["etcd certificates"])
    prepared = plan["etcd members"]
    assert not [a for a in prepared if isinstance(a, BootstrapEtcd)]  # no empty etcd
    assert [a.hosts for a in prepared] == [("e4",), ("e5",), ("e6",)]
    assert prepared[0].describe() == (
        "write /etc/etcd/k8sboot.env, /etc/systemd/system/etcd.service; etcd stays stopped "
        "until `k8sboot etcd restore BACKUP --onto e4,e5,e6`"
    )
    assert {str(f.path) for f in prepared[0].files} == {
        str(topology.EXTERNAL_ENV),
        str(topology.EXTERNAL_UNIT),
    }
    everything = [a for actions in plan.values() for a in actions]
    assert not [a for a in everything if isinstance(a, (KubeadmInit, KubeadmJoin))]
    assert plan["kubeadm init"] == [] and plan["join workers"] == []
    assert set(seen.failed) == {"nodes Ready", "run"}
    assert seen.failed["run"] == (
        "checking that the nodes are Ready: the API on cp1 does not answer ("
        + NO_ETCD
        + "): if etcd is lost, restore it (`k8sboot etcd restore`, README: Restoring after "
        "losing etcd); `k8sboot etcd health` shows what etcd says"
    )
    assert any("--onto e4,e5,e6" in note for note in seen.notes)


def test_up_names_the_lost_hosts_the_cluster_file_still_lists(
    base: dict, tmp_path: Path, monkeypatch
) -> None:
    base["hosts"] = copy.deepcopy(EXTERNAL_HOSTS)
    base["etcd"] = {"topology": "external"}
    cluster = load_data(base).cluster
    found = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    lost = ("e1", "e2", "e3")
    facts = Facts(
        hosts={n: f for n, f in found.items() if n not in lost},
        errors={n: Unreachable(f"{n}: cannot reach it over SSH: No route to host") for n in lost},
    )
    monkeypatch.setattr(session, "probe", lambda *a: facts)
    with pytest.raises(MachineError) as refused:
        session.gather(cluster, None, ProbeRequest(), True, explain=topology.lost_hosts)  # type: ignore[arg-type]
    assert str(refused.value).endswith(
        "(etcd has no quorum and e1, e2, e3 cannot be reached: if they are lost, list the "
        "replacements in the cluster file instead (README: Restoring after losing etcd))"
    )
    first_up = Facts(
        hosts={n: fresh(n, cluster.host(n).ip) for n in found if n not in lost},
        errors=facts.errors,
    )
    monkeypatch.setattr(session, "probe", lambda *a: first_up)
    with pytest.raises(MachineError) as unreachable:  # no etcd ran yet: none was lost
        session.gather(cluster, None, ProbeRequest(), True, explain=topology.lost_hosts)  # type: ignore[arg-type]
    assert "quorum" not in str(unreachable.value)
    ctx = context(cluster, facts.hosts, tmp_path)
    ctx.facts = facts
    problems = health_document(ctx, EtcdView(None, None, None))["problems"]
    assert any("e1, e2, e3 cannot be reached: if they are lost" in p for p in problems)


def _as_up_left_them(base: dict, tmp_path: Path):
    """e4..e6 with their certificates and configuration, etcd stopped, no data."""
    cluster, _ = _replaced(base, tmp_path)
    ctx = converged_external(cluster, tmp_path)
    for host in cluster.with_role("etcd"):
        data = ctx.facts.hosts[host.name].data
        del data["exists"][ETCD_MEMBER_DIR]
        del data["files"][str(topology.EXTERNAL_BOOTSTRAP_ENV)]
        data["services"]["etcd"] = {"active": "inactive", "enabled": "disabled"}
    return cluster, ctx


def test_prepared_hosts_stay_stopped_until_the_restore(base: dict, tmp_path: Path) -> None:
    _, ctx = _as_up_left_them(base, tmp_path)
    assert EtcdMembers().plan(ctx) == []  # `up` again changes nothing, starts nothing
    assert any("left stopped" in note for note in ctx.notes)


def test_restore_onto_prepared_hosts_plans_with_the_api_down(
    base: dict, tmp_path: Path, monkeypatch
) -> None:
    cluster, ctx = _as_up_left_them(base, tmp_path)
    old = ["https://10.0.0.31:2379"]  # the lost members the API servers still name
    monkeypatch.setattr(etcd_restore, "etcd_in_use", lambda ctx, host: (old, []))
    monkeypatch.setattr(etcd_restore, "local_check", lambda *a: None)
    monkeypatch.setattr(etcd_restore, "tools_of", lambda c, h: EtcdTools("3.5.21", "3.5.21", True))
    backup = manifest("lab-1", pipeline_time(), cluster="test")
    workflow = restore_workflow(STORE, backup, ("e4", "e5", "e6"))
    seen = _run(monkeypatch, workflow, cluster, ctx.facts)
    assert seen.failed == {}
    plan = seen.planned["etcd restore"]
    assert not [a for a in plan if isinstance(a, SaveSnapshot)]  # nothing answers to save
    (stage,) = [a for a in plan if isinstance(a, StageRestore)]
    assert [t.host for t in stage.targets] == ["e4", "e5", "e6"]
    (start,) = [a for a in plan if isinstance(a, StartApiServers)]
    assert start.etcd_servers == ",".join(f"https://10.0.0.3{i}:2379" for i in (4, 5, 6))


def pipeline_time():
    from datetime import UTC, datetime

    return datetime(2026, 12, 1, tzinfo=UTC)


def test_steps_that_need_the_nodes_say_the_api_does_not_answer(base: dict, tmp_path: Path) -> None:
    base["hosts"].append({"name": "w2", "address": "10.0.0.22", "roles": ["worker"]})
    cluster = load_data(base).cluster
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    hosts["w2"] = fresh("w2", "10.0.0.22")  # still to join
    ctx = context(cluster, hosts, tmp_path, ready("cp1", "w1"))
    ctx.view = ReadOnlyHosts(_failing_api(["cp1"]))
    session.ask_api(ctx)
    line = f"the API on cp1 does not answer ({NO_ETCD}): if etcd is lost, restore it"
    with pytest.raises(MachineError, match=r"^cannot cordon w1 \(nothing was changed\): ") as no:
        node_cordon("w1", True).steps[0].plan(ctx)
    assert line in str(no.value)
    steps = {step.title: step for step in up().steps}
    with pytest.raises(MachineError, match=r"^join workers: joining w2: the API on cp1 does not"):
        steps["join workers"].plan(ctx)
    with pytest.raises(MachineError, match=r"^checking that the nodes are Ready: the API on cp1"):
        WaitReady().plan(ctx)
    assert steps["kubeadm init"].plan(ctx) == []
    assert steps["join control planes"].plan(ctx) == []  # cp1 is left as it is
    assert any("cp1 left as is" in note for note in ctx.notes)
