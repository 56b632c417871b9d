"""Waits poll for minutes: the run log gets what changed, not every answer."""

from __future__ import annotations

import json
from pathlib import Path

from k8sboot.cluster.cni import WaitNodesReady
from k8sboot.executor import Executor
from k8sboot.runlog import RunLog
from k8sboot.transport import CommandResult

from .conftest import load_data
from .factsdata import context, converged_host
from .fakes import FakeTransport


def _nodes(ready: bool) -> str:
    condition = {"type": "Ready", "status": "True" if ready else "Unknown"}
    if not ready:
        condition["reason"] = "NodeStatusUnknown"
    return json.dumps(
        {"items": [{"metadata": {"name": "w1"}, "status": {"conditions": [condition]}}]}
    )


def _logging(cluster, tmp_path: Path, hosts: dict | None = None):
    """A context whose run log is tmp_path/run.log: what the waits wrote is `_logged`."""
    ctx = context(cluster, hosts or {}, tmp_path)
    ctx.log = RunLog(tmp_path / "run.log")
    return ctx


def _logged(tmp_path: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in (tmp_path / "run.log").read_text().splitlines()]


class PollCounter:
    """Answers `kubectl get nodes` with w1 not Ready for `polls` answers, then Ready."""

    def __init__(self, polls: int):
        self.name = "cp1"
        self.polls = polls
        self.asked = 0

    def run(self, command: str, **options: object) -> CommandResult:
        assert options.get("quiet"), "a poll must not log each answer itself"
        self.asked += 1
        answer = _nodes(ready=self.asked > self.polls)
        return CommandResult("cp1", command, 0, answer.encode(), "", 0.0)

    ask = run  # a question runs as any command here


def test_waiting_for_ready_logs_changes_only(base: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("k8sboot.cluster.cni.time.sleep", lambda _: None)
    ctx = _logging(load_data(base).cluster, tmp_path)
    transport = FakeTransport(cp1=(poller := PollCounter(polls=50)))
    Executor(ctx, transport).execute(WaitNodesReady("cp1", ("w1",), timeout=600))  # type: ignore[arg-type]
    ctx.log.close()
    assert poller.asked == 51
    assert _logged(tmp_path) == [
        "cp1: nodes Ready? w1: NodeStatusUnknown",
        "cp1: nodes Ready? all Ready",
    ]


class KubeletPoller:
    """Answers `kubectl get node w1`: the old kubelet for `polls` answers, then the new one
    Ready."""

    def __init__(self, polls: int):
        self.name = "cp1"
        self.polls = polls
        self.asked = 0

    def run(self, command: str, **options: object) -> CommandResult:
        assert options.get("quiet"), "a poll must not log each answer itself"
        self.asked += 1
        done = self.asked > self.polls
        node = {
            "status": {
                "nodeInfo": {"kubeletVersion": "v1.33.1" if done else "v1.32.4"},
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        }
        return CommandResult("cp1", command, 0, json.dumps(node).encode(), "", 0.0)


def test_waiting_for_an_upgraded_kubelet_logs_changes_only(
    base: dict, tmp_path: Path, monkeypatch
) -> None:
    from k8sboot.cluster.upgrade import UpgradeNode, _wait_kubelet
    from k8sboot.nodes.drain import DrainOptions

    monkeypatch.setattr("k8sboot.cluster.upgrade.time.sleep", lambda _: None)
    ctx = _logging(load_data(base).cluster, tmp_path)
    transport = FakeTransport(cp1=(poller := KubeletPoller(polls=30)))
    action = UpgradeNode("w1", "1.33.1", (), "cp1", "https://10.0.0.11:6443", DrainOptions())
    _wait_kubelet(Executor(ctx, transport), action)  # type: ignore[arg-type]
    ctx.log.close()
    assert poller.asked == 31
    assert _logged(tmp_path) == ["w1: waiting for kubelet v1.33.1 Ready: kubelet v1.32.4, Ready"]


class EtcdPoller:
    """Answers etcdctl's endpoint health: refused for `sick` polls, then healthy; and the
    API server's /readyz: refused for `unready` polls, then ok."""

    def __init__(self, sick: int, unready: int = 0):
        self.name = "cp1"
        self.sick, self.unready = sick, unready
        self.asked = {"health": 0, "readyz": 0}

    def run(self, command: str, **options: object) -> CommandResult:
        assert options.get("quiet"), "a poll must not log each answer itself"
        if "/readyz" in command:
            self.asked["readyz"] += 1
            if self.asked["readyz"] <= self.unready:
                return CommandResult("cp1", command, 1, b"", "connection refused\n", 0.0)
            return CommandResult("cp1", command, 0, b"ok", "", 0.0)
        assert "endpoint health" in command, command
        # A member not up yet costs each poll its whole answer wait: a poll waits as long
        # as for the connection (2 s), not a question's 5 s.
        assert "--dial-timeout=2s --command-timeout=2s" in command, command
        self.asked["health"] += 1
        healthy = self.asked["health"] > self.sick
        answer = [
            {
                "endpoint": "https://10.0.0.11:2379",
                "health": healthy,
                "took": f"{self.asked['health']}ms",  # differs every time: not a change
                "error": "" if healthy else "connection refused",
            }
        ]
        return CommandResult(
            "cp1", command, 0 if healthy else 1, json.dumps(answer).encode(), "", 0.0
        )

    ask = run  # a question runs as any command here


def test_waiting_for_etcd_health_logs_changes_only(base: dict, tmp_path: Path, monkeypatch) -> None:
    from k8sboot.etcd.external import wait_healthy

    monkeypatch.setattr("k8sboot.etcd.external.time.sleep", lambda _: None)
    cluster = load_data(base).cluster
    ctx = _logging(cluster, tmp_path, {"cp1": converged_host(cluster, "cp1")})
    transport = FakeTransport(cp1=(poller := EtcdPoller(sick=40)))
    wait_healthy(Executor(ctx, transport))  # type: ignore[arg-type]
    ctx.log.close()
    assert poller.asked["health"] == 41
    assert _logged(tmp_path) == [
        "cp1: etcd healthy? https://10.0.0.11:2379 (connection refused)",
        "cp1: etcd healthy? all healthy",
    ]


def test_waiting_after_a_certificate_restart_logs_changes_only(
    base: dict, tmp_path: Path, monkeypatch
) -> None:
    from k8sboot.certs.renew import _wait_healthy
    from k8sboot.etcd.client import STACKED_TLS, EtcdCtl

    monkeypatch.setattr("k8sboot.certs.renew.time.sleep", lambda _: None)
    ctx = _logging(load_data(base).cluster, tmp_path)
    poller = EtcdPoller(sick=20, unready=30)
    etcd = EtcdCtl(poller, STACKED_TLS, ["https://10.0.0.11:2379"])  # type: ignore[arg-type]
    executor = Executor(ctx, FakeTransport(cp1=poller))  # type: ignore[arg-type]
    _wait_healthy(executor, poller, "https://10.0.0.11:6443", etcd)  # type: ignore[arg-type]
    ctx.log.close()
    assert poller.asked == {"health": 31, "readyz": 31}
    assert _logged(tmp_path) == [
        "cp1: healthy after the restart? etcd: connection refused; API server: connection refused",
        "cp1: healthy after the restart? API server: connection refused",
        "cp1: healthy after the restart? yes",
    ]
