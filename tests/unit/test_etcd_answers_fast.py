"""With no etcd member answering, the read-only etcd checks end after one answer timeout,
not one per host and per member: every host and member is asked at once, with etcdctl's
own short timeouts (etcdctl/ctlv3/ctl.go: --dial-timeout 2s, --command-timeout 5s, in
v3.4 and v3.5). `endpoint status` asks its endpoints one after another
(etcdctl/ctlv3/command/ep_command.go, epStatusCommandFunc), so each endpoint gets its own
etcdctl."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from k8sboot.etcd.observe import observe
from k8sboot.health.observe import Reach, observe_cluster, run_parallel
from k8sboot.spec import Cluster
from k8sboot.transport import CommandResult, ReadOnlyHosts

from .conftest import load_data
from .factsdata import context, converged_host
from .fakes import FakeTransport

# What an etcdctl that never gets an answer takes here (its whole wait, made short).
WAIT = 1.0
TOOLS = "etcdctl version: 3.5.16\n--\netcdutl version: 3.5.16\n--\n2\n--\n\n"


class SilentEtcd:
    """A host whose etcdctl waits WAIT seconds and fails, as with every member down."""

    def __init__(self, name: str):
        self.name = name
        self.etcdctl: list[str] = []
        self.lock = threading.Lock()

    def open(self, attempts: int = 3) -> SilentEtcd:
        return self

    def run(self, command: str, **_: object) -> CommandResult:
        if "ETCDCTL_API=3" in command and "--endpoints" in command:
            with self.lock:
                self.etcdctl.append(command)
            time.sleep(WAIT)
            error = "context deadline exceeded"
            return CommandResult(self.name, command, 1, b"", error, WAIT)
        if "version" in command:  # which etcd tools
            return CommandResult(self.name, command, 0, TOOLS.encode(), "", 0.0)
        return CommandResult(self.name, command, 0, b"", "", 0.0)

    ask = run  # a question runs as any command here


def _silent(names: list[str]) -> FakeTransport:
    return FakeTransport({n: SilentEtcd(n) for n in names})


def _slow_commands(transport: FakeTransport) -> list[str]:
    """The etcdctl commands asked with longer waits than etcdctl's own defaults."""
    commands = [c for conn in transport.values() for c in conn.etcdctl]
    assert commands
    return [c for c in commands if "--dial-timeout=2s --command-timeout=5s " not in c]


def _five_control_planes(base: dict) -> Cluster:
    base["hosts"] = [
        {"name": f"cp{i}", "address": f"10.0.0.{10 + i}", "roles": ["control-plane"]}
        for i in range(1, 6)
    ]
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    return load_data(base).cluster


def test_etcd_health_with_no_member_answering_waits_once(base: dict, tmp_path: Path) -> None:
    cluster = _five_control_planes(base)
    ctx = context(
        cluster, {h.name: converged_host(cluster, h.name) for h in cluster.hosts}, tmp_path
    )
    transport = _silent([h.name for h in cluster.hosts])
    ctx.view = ReadOnlyHosts(transport)  # type: ignore[arg-type]
    started = time.monotonic()
    view = observe(ctx)
    took = time.monotonic() - started
    assert not view.answers and not view.healthy
    assert "etcd does not answer (no quorum, or no member reachable)" in view.problems()
    # Five hosts asked for the member list, five endpoints for their status: one wait.
    assert took < 2 * WAIT, f"{took:.1f}s"
    assert _slow_commands(transport) == []
    status = [c for c in transport["cp1"].etcdctl if "endpoint status" in c]
    assert len(status) == 5 and all("--endpoints=https://10.0.0.1" in c for c in status)


def test_health_with_no_member_answering_waits_once(base: dict) -> None:
    cluster = _five_control_planes(base)
    transport = _silent([h.name for h in cluster.hosts])
    started = time.monotonic()
    seen = observe_cluster(cluster, Reach(transport), run_parallel)
    took = time.monotonic() - started
    assert seen.error is None and seen.members is None and seen.etcd_error
    assert took < 2 * WAIT, f"{took:.1f}s"
    assert _slow_commands(transport) == []
