"""`health` verdicts from observations: facts in, one verdict per check out."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from k8sboot.certs.expiry import Certificate
from k8sboot.etcd.client import Alarm, EndpointHealth, EndpointStatus, Member
from k8sboot.facts import NodeStatus
from k8sboot.health.observe import ClusterObservation, HostObservation, Observations
from k8sboot.health.verdicts import CHECKS, Verdict, healthy, judge

from .hacluster import CONTROL_PLANES as CPS
from .hacluster import ha_cluster

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def cluster(base: dict):
    return ha_cluster(base)


def _ok(body: str = "ok") -> dict:
    return {"status": 200, "body": body}


def _host(name: str, control_plane: bool) -> HostObservation:
    probe = {
        "services": {"containerd": "active", "kubelet": "active"},
        "urls": {"endpoint": _ok()},
        "ca": True,
    }
    certificates = None
    if control_plane:
        probe["urls"] |= {"readyz": _ok(), "version": _ok(json.dumps({"gitVersion": "v1.33.1"}))}
        probe["etcd_quota"] = 2 * 1024**3
        certificates = [
            Certificate(name, "apiserver", "ca", NOW + timedelta(days=300), False),
            Certificate(name, "ca", "", NOW + timedelta(days=3000), False),
        ]
    return HostObservation(
        name, probe=probe, clock_offset=0.01, clock_error=0.02, certificates=certificates
    )


def _members() -> list[Member]:
    return [
        Member(i, n, (f"https://{ip}:2380",), (f"https://{ip}:2379",), False)
        for i, (n, ip) in enumerate(CPS.items(), 1)
    ]


def _healthy() -> Observations:
    hosts = {n: _host(n, True) for n in CPS} | {"w1": _host("w1", False)}
    nodes = {
        n: NodeStatus(n, True, "KubeletReady", "v1.33.1", None, False, {}, {"Ready": "True"})
        for n in hosts
    }
    members = _members()
    cluster = ClusterObservation(
        nodes=nodes,
        members=members,
        etcd_health=[EndpointHealth(m.client_urls[0], True, "3ms", "") for m in members],
        etcd_status=[
            EndpointStatus(m.client_urls[0], m.id, 1, "3.5", 20 * 1024**2, 0, 9, 9, 2, ())
            for m in members
        ],
    )
    return Observations(hosts, cluster, NOW)


def _find(verdicts: list[Verdict], check: str, target: str) -> Verdict:
    return next(v for v in verdicts if v.check == check and v.target == target)


def test_a_healthy_cluster(cluster) -> None:
    verdicts = judge(cluster, _healthy())
    assert healthy(verdicts)
    assert {v.status for v in verdicts} == {"ok"}, [v for v in verdicts if v.status != "ok"]
    assert {v.check for v in verdicts} == set(CHECKS)
    assert _find(verdicts, "etcd leader", "cluster").detail == "cp1"
    assert _find(verdicts, "etcd db size", "cp2").detail == "20.0 MiB of 2048.0 MiB (1%)"


def test_an_unreachable_host_fails_once_and_skips_the_rest(cluster) -> None:
    seen = _healthy()
    seen.hosts["w1"] = HostObservation("w1", error="w1: cannot reach 10.0.0.21:22 over SSH")
    verdicts = [v for v in judge(cluster, seen) if v.target == "w1"]
    assert [(v.check, v.status) for v in verdicts if v.status != "ok"] == [
        ("ssh", "fail"),
        ("containerd", "skip"),
        ("kubelet", "skip"),
        ("endpoint", "skip"),
    ]


def test_a_changed_host_key_says_so(cluster) -> None:
    seen = _healthy()
    seen.hosts["cp2"] = HostObservation("cp2", error="cp2: key changed", host_key_changed=True)
    verdict = _find(judge(cluster, seen), "ssh", "cp2")
    assert verdict.status == "fail" and verdict.detail.startswith("host key changed")


def test_a_stopped_kubelet_and_a_failing_api_server(cluster) -> None:
    seen = _healthy()
    seen.hosts["w1"].probe["services"]["kubelet"] = "inactive"  # type: ignore[index]
    seen.hosts["cp3"].probe["urls"]["readyz"] = {  # type: ignore[index]
        "status": 500,
        "body": "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed",
    }
    verdicts = judge(cluster, seen)
    assert not healthy(verdicts)
    assert _find(verdicts, "kubelet", "w1") == Verdict("kubelet", "w1", "fail", "inactive")
    assert _find(verdicts, "apiserver", "cp3").detail == (
        "/readyz 500 (local): etcd failed: reason withheld"
    )


def test_a_stopped_etcd_member_and_alarms(cluster) -> None:
    seen = _healthy()
    seen.cluster.etcd_health[1] = EndpointHealth(
        "https://10.0.0.12:2379", False, "", "context deadline exceeded"
    )
    seen.cluster.alarms = [Alarm(3, "NOSPACE")]
    verdicts = judge(cluster, seen)
    assert _find(verdicts, "etcd member", "cp2").status == "fail"
    assert "context deadline exceeded" in _find(verdicts, "etcd member", "cp2").detail
    assert _find(verdicts, "etcd alarms", "cluster").detail == "NOSPACE on cp3"


def test_db_size_against_the_quota(cluster) -> None:
    seen = _healthy()
    status = seen.cluster.etcd_status
    status[0] = replace(status[0], db_size=int(1.7 * 1024**3))
    status[1] = replace(status[1], db_size=int(1.99 * 1024**3))
    verdicts = judge(cluster, seen)
    assert _find(verdicts, "etcd db size", "cp1").status == "warn"
    assert _find(verdicts, "etcd db size", "cp2").status == "fail"


def test_no_leader(cluster) -> None:
    seen = _healthy()
    seen.cluster.etcd_status = [replace(s, leader_id=0) for s in seen.cluster.etcd_status]
    assert _find(judge(cluster, seen), "etcd leader", "cluster").status == "fail"


def test_node_conditions_and_version_skew(cluster) -> None:
    seen = _healthy()
    nodes = seen.cluster.nodes
    assert nodes is not None
    nodes["w1"] = NodeStatus(
        "w1", False, "NodeStatusUnknown", "v1.29.4", None, False, {}, {"DiskPressure": "True"}
    )
    nodes["cp3"] = replace(nodes["cp3"], kubelet_version="v1.32.2")
    nodes["cp2"] = replace(nodes["cp2"], kubelet_version="v1.34.0")
    verdicts = judge(cluster, seen)
    assert _find(verdicts, "node", "w1") == Verdict("node", "w1", "fail", "NodeStatusUnknown")
    assert _find(verdicts, "node pressure", "w1").detail == "DiskPressure"
    assert _find(verdicts, "version skew", "w1").status == "fail"  # 4 minors behind
    assert _find(verdicts, "version skew", "cp3").status == "warn"  # behind, supported
    assert _find(verdicts, "version skew", "cp2").status == "fail"  # newer than the API


def test_certificates_near_expiry_warn_and_expired_fail(cluster) -> None:
    seen = _healthy()
    seen.hosts["cp1"].certificates = [
        Certificate("cp1", "front-proxy-client", "front-proxy-ca", NOW + timedelta(days=9), False)
    ]
    seen.hosts["cp2"].certificates = [
        Certificate("cp2", "apiserver", "ca", NOW - timedelta(days=1), False)
    ]
    verdicts = judge(cluster, seen)
    near = _find(verdicts, "certificates", "cp1")
    assert near.status == "warn" and near.detail.startswith("front-proxy-client expires in 9 days")
    assert _find(verdicts, "certificates", "cp2").status == "fail"
    assert _find(judge(cluster, seen, warn_days=5), "certificates", "cp1").status == "ok"


def test_clock_skew_beyond_what_the_measurement_explains(cluster) -> None:
    seen = _healthy()
    seen.hosts["cp2"].clock_offset = 3.0
    seen.hosts["cp3"].clock_offset = -40.0
    seen.hosts["w1"].clock_offset, seen.hosts["w1"].clock_error = 1.2, 0.5
    verdicts = judge(cluster, seen)
    assert _find(verdicts, "clock", "cp2").status == "warn"
    assert _find(verdicts, "clock", "cp3").status == "fail"
    assert _find(verdicts, "clock", "w1").status == "ok"  # 1.19 s +- 0.5 s


def test_stale_members_and_nodes_are_flagged(cluster) -> None:
    seen = _healthy()
    assert seen.cluster.members is not None and seen.cluster.nodes is not None
    seen.cluster.members.append(
        Member(9, "old", ("https://10.0.0.99:2380",), ("https://10.0.0.99:2379",), False)
    )
    seen.cluster.nodes["old"] = replace(seen.cluster.nodes["w1"], name="old")
    seen.cluster.nodes["back"] = replace(seen.cluster.nodes["w1"], name="back")
    verdicts = judge(cluster, seen, removed=frozenset({"back"}))
    assert _find(verdicts, "etcd member", "old").status == "warn"
    assert _find(verdicts, "node", "old").detail.endswith("stale?")
    assert "registered again" in _find(verdicts, "node", "back").detail


def test_no_control_plane_to_ask(cluster) -> None:
    seen = _healthy()
    seen.cluster = ClusterObservation(error="no control plane to ask: cp1: unreachable")
    verdicts = judge(cluster, seen)
    assert _find(verdicts, "etcd", "cluster").status == "fail"
    assert _find(verdicts, "node", "cluster").status == "fail"
