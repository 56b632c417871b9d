"""Node maintenance on lab machines, as a user runs it: cordon, a drain refused because a
PodDisruptionBudget (and a bare pod, and emptyDir data) would block it, a drain that runs
out of time and says which pods are left and why, a drain that succeeds; removing a
worker (and `up` leaving it out afterwards), a dead worker, a control plane (etcd 3 -> 2;
2 -> 1 refused), adding it back, and removing it again once it is dead.

The shared cluster of three control planes behind kube-vip and two workers, which this
module takes apart (so it releases it: reset). The tests build on each other and run in
order.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import K8sboot, SharedHA, events, finished
from tests.e2e.labspec import etcd_members
from tests.lab.standins import workloads


@pytest.fixture(scope="module")
def cluster(ha: SharedHA) -> Iterator[K8sboot]:
    yield ha.acquire()
    ha.release()


def _node(k8sboot: K8sboot, name: str) -> dict:
    return json.loads(k8sboot.kubectl("get", "node", name, "-o", "json").stdout)


def _pods(k8sboot: K8sboot, node: str, terminating: bool = False) -> list[dict]:
    found = k8sboot.kubectl(
        "get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", "-o", "json"
    ).stdout
    return [
        p
        for p in json.loads(found)["items"]
        if terminating or not p["metadata"].get("deletionTimestamp")
    ]


def _wait_gone(k8sboot: K8sboot, node: str, prefixes: tuple[str, ...], timeout: float = 90) -> None:
    """Evicted pods finish on the kubelet's time (their grace period), not the drain's."""
    deadline = time.monotonic() + timeout
    while True:
        names = [p["metadata"]["name"] for p in _pods(k8sboot, node, terminating=True)]
        still = [n for n in names if n.startswith(prefixes)]
        if not still:
            return
        assert time.monotonic() < deadline, f"still on {node}: {still}"
        time.sleep(1)


def _apply(k8sboot: K8sboot, objects: list[dict]) -> None:
    path = k8sboot.workdir / "workloads.yaml"
    path.write_text(workloads.to_yaml(objects))
    k8sboot.kubectl("apply", "-f", str(path))


def _wait_running(k8sboot: K8sboot, node: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        running = [
            p
            for p in _pods(k8sboot, node)
            if p["metadata"]["namespace"] == "default" and p["status"].get("phase") == "Running"
        ]
        if len(running) >= count:
            return
        assert time.monotonic() < deadline, f"{len(running)}/{count} pods running on {node}"
        time.sleep(1)


def test_cordon_uncordon_and_unknown_names(cluster: K8sboot) -> None:
    done = cluster.run("node", "cordon", "w9", check=False)
    assert done.returncode == 2
    assert "known nodes: cp1, cp2, cp3, w1, w2" in done.stderr and "Traceback" not in done.stderr
    cluster.run("node", "cordon", "w1")
    assert _node(cluster, "w1")["spec"].get("unschedulable") is True
    again = finished(events(cluster.run("node", "cordon", "w1", "-o", "json").stdout))
    assert again["changed"] == {}  # already cordoned: converged
    cluster.run("node", "uncordon", "w1")
    assert not _node(cluster, "w1")["spec"].get("unschedulable")


def test_a_drain_blocked_by_a_pdb_is_refused_naming_what_blocks(cluster: K8sboot) -> None:
    _apply(
        cluster,
        [
            workloads.deployment("web", 2, nodes=["w1"]),
            workloads.pdb("web", "web", min_available=2),
            workloads.pod("bare", "w1"),
            workloads.deployment("scratch", 1, nodes=["w1"], emptydir=True),
        ],
    )
    _wait_running(cluster, "w1", 4)
    done = cluster.run("node", "drain", "w1", check=False)
    assert done.returncode == 3, done.stderr
    assert "PodDisruptionBudget default/web (minAvailable 2) allows 0 disruption(s)" in done.stderr
    assert "no controller (a bare Pod): default/bare" in done.stderr
    assert "emptyDir data would be lost: default/scratch-" in done.stderr
    assert not _node(cluster, "w1")["spec"].get("unschedulable"), "refused means untouched"


def test_a_drain_that_runs_out_of_time_names_the_pods_left(cluster: K8sboot) -> None:
    done = cluster.run(
        "node", "drain", "w1", "--force", "--delete-emptydir-data", "--timeout", "10s", check=False
    )
    assert done.returncode == 1, done.stderr
    assert "drain of w1 did not finish within 10s; pods left: " in done.stderr
    # The groups are listed by reason; evicted pods still terminating may come first.
    left = done.stderr.split("pods left: ", 1)[1]
    assert re.search(
        r"default/web-\S+, default/web-\S+ \(PodDisruptionBudget default/web \(minAvailable 2\) "
        r"allows 0",
        left,
    ), left
    # Evicted: no longer running there as far as the API is concerned.
    names = {p["metadata"]["name"] for p in _pods(cluster, "w1")}
    assert "bare" not in names and not any(n.startswith("scratch-") for n in names)
    # The next drain must not meet them terminating (kubectl would refuse it too: its
    # skipDeletedFilter keeps terminating pods unless --skip-wait-for-delete-timeout is set).
    _wait_gone(cluster, "w1", ("bare", "scratch-"))


def test_a_drain_that_succeeds(cluster: K8sboot) -> None:
    cluster.kubectl("delete", "pdb", "web")
    result = finished(events(cluster.run("node", "drain", "w1", "-o", "json").stdout))
    assert result["changed"] == {"drain w1": ["w1"]}
    left = _pods(cluster, "w1")
    assert left, "DaemonSet pods stay"
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet" for p in left), left
    assert _node(cluster, "w1")["spec"]["unschedulable"] is True
    cluster.kubectl(
        "delete",
        "-f",
        str(cluster.workdir / "workloads.yaml"),
        "--ignore-not-found",
        "--wait=false",
    )


def test_removing_a_worker_and_up_leaves_it_out(cluster: K8sboot) -> None:
    done = cluster.run("node", "remove", "w1", check=False)
    assert done.returncode == 2 and "pass --yes" in done.stderr
    cluster.run("node", "remove", "w1", "--yes")
    assert "w1" not in cluster.nodes()
    left = cluster.lab.ssh(
        "w1",
        "sudo sh -c 'ls /etc/kubernetes/kubelet.conf /etc/cni/net.d/* 2>/dev/null; "
        "systemctl is-active kubelet; iptables-save | grep -c KUBE-'",
        check=False,
    ).stdout.split()
    assert left == ["inactive", "0"], left
    evts = events(cluster.run("up", "-o", "json").stdout)
    assert finished(evts)["changed"] == {}, "up must not join a removed host again"
    notes = [e["message"] for e in evts if e["event"] == "note"]
    assert any("w1 was removed with `k8sboot node remove`" in n for n in notes), notes


def test_removing_a_dead_worker(cluster: K8sboot) -> None:
    cluster.lab.stop("w2")
    # --vagrant: the hosts come from Vagrant, which lists the stopped machine too.
    done = cluster.run("node", "remove", "w2", "--yes", "--vagrant")
    assert "w2 could not be reached" in done.stderr
    assert set(cluster.nodes()) == {"cp1", "cp2", "cp3"}


def test_removing_a_control_plane_takes_etcd_from_three_to_two_never_to_one(
    cluster: K8sboot,
) -> None:
    assert etcd_members(cluster.lab) == ["cp1", "cp2", "cp3"]
    cluster.run("node", "remove", "cp3", "--yes")
    assert etcd_members(cluster.lab) == ["cp1", "cp2"]
    assert set(cluster.nodes()) == {"cp1", "cp2"}
    left = cluster.lab.ssh("cp3", "sudo ls /etc/kubernetes/manifests /var/lib/etcd").stdout
    assert left.split() == ["/etc/kubernetes/manifests:", "/var/lib/etcd:"]

    # 2 -> 1 would leave etcd without quorum while a member is away: refused.
    done = cluster.run("node", "remove", "cp2", "--yes", check=False)
    assert done.returncode == 3, done.stderr
    assert "would leave etcd without quorum" in done.stderr
    assert etcd_members(cluster.lab) == ["cp1", "cp2"]
    assert set(cluster.nodes()) == {"cp1", "cp2"}


def test_adding_it_back_then_removing_it_dead(cluster: K8sboot) -> None:
    cluster.run("node", "add", "cp3")
    assert etcd_members(cluster.lab) == ["cp1", "cp2", "cp3"]
    assert cluster.nodes() == {"cp1": True, "cp2": True, "cp3": True}
    cluster.lab.stop("cp3")
    done = cluster.run("node", "remove", "cp3", "--yes")
    assert "cp3 could not be reached" in done.stderr
    assert etcd_members(cluster.lab) == ["cp1", "cp2"]
    assert set(cluster.nodes()) == {"cp1", "cp2"}
