"""The controller-manager stand-in's node lifecycle, as upstream's tryUpdateNodeHealth
(kubernetes pkg/controller/nodelifecycle/node_lifecycle_controller.go, v1.30-v1.33) decides
it: a node's health is judged from when the controller itself last saw a heartbeat, never by
comparing a Lease's renewTime with the clock."""

from __future__ import annotations

import copy

import pytest


class Cluster:
    """The two kinds the lifecycle reads, and the status it writes."""

    def __init__(self, renewed: str) -> None:
        self.node = {
            "metadata": {"name": "cp2", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": "2020-01-01T00:00:00Z"}
                ]
            },
        }
        self.renewed = renewed

    def list(self, kind, ns=None):
        if kind == "Lease":
            return [{"metadata": {"name": "cp2"}, "spec": {"renewTime": self.renewed}}]
        return [copy.deepcopy(self.node)] if kind == "Node" else []

    def get(self, kind, name, ns=None):
        return copy.deepcopy(self.node)

    def update(self, obj, sub=None):
        self.node = copy.deepcopy(obj)

    def ready(self) -> str:
        return self.node["status"]["conditions"][0]["status"]


@pytest.fixture
def lifecycle(monkeypatch):
    monkeypatch.setenv("K8SBOOT_STANDIN_VERSION", "v1.32.3")
    from tests.lab.standins import controller_manager

    clock = [1000.0]
    monkeypatch.setattr(controller_manager.time, "monotonic", lambda: clock[0])

    def make(cluster: Cluster):
        cm = controller_manager.ControllerManager(cluster, {})

        def at(seconds: float) -> str:
            clock[0] = 1000.0 + seconds
            cm.cache = {}
            cm.nodelifecycle()
            return cluster.ready()

        return cm, at

    return make


def test_restored_leases_get_a_whole_grace_period(lifecycle):
    """After an etcd restore every Lease's renewTime is as old as the snapshot. Upstream
    first sees the node "now" (the "Missing timestamp for Node" branch), so a kubelet that
    renews within nodeMonitorGracePeriod (50 s from v1.32) is never marked Unknown."""
    cluster = Cluster(renewed="2020-01-01T00:00:00.000000Z")
    cm, at = lifecycle(cluster)
    assert cm.grace == 50
    assert at(0) == "True"
    assert at(49) == "True"
    cluster.renewed = "2020-01-01T00:00:10.000000Z"
    assert at(49.5) == "True"
    assert at(99) == "True"
    assert at(100) == "Unknown"  # no renewal for more than the grace period since


def test_a_lease_renewed_to_an_earlier_time_is_not_a_heartbeat(lifecycle):
    """Upstream takes a Lease as renewed only when its renewTime is after the one it saw
    (savedLease.Spec.RenewTime.Before(observedLease.Spec.RenewTime)): a restore that puts
    an older Lease back does not count."""
    cluster = Cluster(renewed="2026-01-01T00:00:10.000000Z")
    _, at = lifecycle(cluster)
    assert at(0) == "True"
    cluster.renewed = "2026-01-01T00:00:00.000000Z"
    assert at(30) == "True"
    assert at(51) == "Unknown"
    assert {t["key"] for t in cluster.node["spec"]["taints"]} == {"node.kubernetes.io/unreachable"}
