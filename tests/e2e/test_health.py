"""`k8sboot health` (and `certs check` / `certs renew`) on lab machines: a healthy
cluster answers in seconds; then a stopped kubelet, a stopped etcd member, a control plane
cut off the network, a certificate near expiry (renewed afterwards) and a changed host key
are each found, and the cluster is healthy again once each is undone.

The shared cluster of three control planes behind kube-vip and two workers; the module
leaves it healthy for the next.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from k8sboot.health.verdicts import CHECKS
from tests.e2e.conftest import K8sboot, SharedHA, events, finished
from tests.e2e.labspec import shorten_certificate

FAST = 10.0  # seconds health may take on a healthy lab cluster (a few on a quiet machine)


@pytest.fixture(scope="module")
def cluster(ha: SharedHA) -> K8sboot:
    return ha.acquire()


def _health(k8sboot: K8sboot) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    done = k8sboot.run("health", "-o", "json", check=False)
    assert done.returncode in (0, 1), done.stderr
    assert done.stdout, f"health printed no verdicts: {done.stderr}"
    return done.returncode, json.loads(done.stdout), time.monotonic() - started


def _verdict(document: dict[str, Any], check: str, target: str) -> dict[str, str]:
    return next(c for c in document["checks"] if c["check"] == check and c["target"] == target)


def _problems(document: dict[str, Any]) -> list[str]:
    return [
        f"{c['check']} {c['target']}: {c['status']} {c['detail']}"
        for c in document["checks"]
        if c["status"] != "ok"
    ]


def _until_healthy(k8sboot: K8sboot, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, document, _ = _health(k8sboot)
        if code == 0 and not _problems(document):
            return document
        assert time.monotonic() < deadline, _problems(document)
        time.sleep(3)


def test_a_healthy_cluster_in_a_few_seconds(cluster: K8sboot) -> None:
    document = _until_healthy(cluster)  # the cluster has just come up
    code, document, _ = _health(cluster)
    assert code == 0 and document["healthy"] is True, _problems(document)
    assert document["seconds"] < FAST, document["seconds"]
    assert {c["check"] for c in document["checks"]} == set(CHECKS)
    assert len([c for c in document["checks"] if c["check"] == "etcd member"]) == 3
    table = cluster.run("health").stdout
    assert "healthy:" in table and "etcd leader" in table


def test_a_stopped_kubelet(cluster: K8sboot) -> None:
    cluster.lab.ssh("w1", "sudo systemctl stop kubelet")
    try:
        code, document, _ = _health(cluster)
        assert code == 1 and document["healthy"] is False
        assert _verdict(document, "kubelet", "w1")["status"] == "fail"
        assert _verdict(document, "kubelet", "w1")["detail"] == "inactive"
    finally:
        cluster.lab.ssh("w1", "sudo systemctl start kubelet")
    _until_healthy(cluster)


def test_a_stopped_etcd_member(cluster: K8sboot) -> None:
    manifest = "/etc/kubernetes/manifests/etcd.yaml"
    cluster.lab.ssh("cp2", f"sudo mv {manifest} /etc/kubernetes/etcd.yaml.stopped")
    try:
        deadline = time.monotonic() + 30
        while True:  # the kubelet stops the static pod within about a second
            code, document, _ = _health(cluster)
            if _verdict(document, "etcd member", "cp2")["status"] == "fail":
                break
            assert time.monotonic() < deadline, _problems(document)
        assert code == 1
        assert _verdict(document, "etcd member", "cp1")["status"] == "ok"
    finally:
        cluster.lab.ssh("cp2", f"sudo mv /etc/kubernetes/etcd.yaml.stopped {manifest}")
    _until_healthy(cluster)


def test_a_control_plane_cut_off_the_network(cluster: K8sboot) -> None:
    cluster.lab.partition("cp3")
    try:
        code, document, seconds = _health(cluster)
        assert code == 1
        ssh = _verdict(document, "ssh", "cp3")
        assert ssh["status"] == "fail" and "cannot reach" in ssh["detail"]
        assert _verdict(document, "kubelet", "cp3")["status"] == "skip"
        assert _verdict(document, "etcd member", "cp3")["status"] == "fail"
        assert _verdict(document, "etcd member", "cp1")["status"] == "ok"
        assert seconds < 60, "one connect timeout and one etcd timeout, not a retry loop"
    finally:
        cluster.lab.heal("cp3")
    _until_healthy(cluster)


def test_a_certificate_near_expiry_is_found_and_renewed(cluster: K8sboot) -> None:
    shorten_certificate(cluster.lab, "cp1", "front-proxy-client", "front-proxy-ca", 10)
    code, document, _ = _health(cluster)
    assert code == 0, "a warning is not a failure"
    near = _verdict(document, "certificates", "cp1")
    assert near["status"] == "warn" and near["detail"].startswith("front-proxy-client expires in")
    done = cluster.run("certs", "check", "-o", "json", check=False)
    assert done.returncode == 1
    (entry,) = [
        c
        for c in json.loads(done.stdout)["certificates"]
        if c["host"] == "cp1" and c["name"] == "front-proxy-client"
    ]
    assert entry["status"] == "warn" and 9 < entry["days_left"] < 11
    renewed = finished(events(cluster.run("certs", "renew", "-o", "json").stdout))
    assert renewed["changed"]["renew certificates"] == ["cp1", "cp2", "cp3"]
    assert cluster.run("certs", "check", check=False).returncode == 0
    assert _verdict(_until_healthy(cluster), "certificates", "cp1")["status"] == "ok"
    assert cluster.nodes() == {n: True for n in ("cp1", "cp2", "cp3", "w1", "w2")}


def test_a_changed_host_key(cluster: K8sboot) -> None:
    lab = cluster.lab
    known = cluster.state / "known_hosts"
    pinned = known.read_text()
    lab.ssh(
        "w2",
        "sudo sh -c 'rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null "
        "&& systemctl restart ssh'",
    )
    lab.forget_host_key("w2")
    code, document, _ = _health(cluster)
    assert code == 1
    ssh = _verdict(document, "ssh", "w2")
    assert ssh["status"] == "fail" and ssh["detail"].startswith("host key changed")
    assert known.read_text() == pinned, "health never pins a changed key"
    address = lab.machine("w2").ssh_host
    known.write_text(
        "".join(
            line for line in pinned.splitlines(keepends=True) if not line.startswith(address + " ")
        )
    )
    _until_healthy(cluster)
