"""`k8sboot upgrade` of the shared HA cluster (3 control planes behind kube-vip, 2 workers)
one minor on, with a Deployment under a PodDisruptionBudget running throughout and the
API asked through the virtual IP every 100 ms: refusals first (a skipped minor, `up` with a
new version), then an upgrade killed at three points and a worker rebooted under it, run
again each time, then a no-op run and a refused downgrade. The cluster is left upgraded
and healthy for the modules after this one (issue 18)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from tests.e2e.apiwatch import Watch
from tests.e2e.conftest import K8sboot, SharedHA, events, finished
from tests.e2e.labspec import HA_VERSION, UPGRADED_VERSION
from tests.lab.standins import workloads

NODES = ("cp1", "cp2", "cp3", "w1", "w2")


@pytest.fixture(scope="module")
def cluster(ha: SharedHA) -> K8sboot:
    return ha.acquire()


def _set_version(cluster: K8sboot, version: str) -> None:
    spec = yaml.safe_load(cluster.spec.read_text())
    spec["kubernetes"] = {"version": version}
    cluster.spec.write_text(yaml.safe_dump(spec, sort_keys=False))


def _versions(cluster: K8sboot) -> dict[str, str]:
    """Node -> the version its kubelet reports, as the real kubectl sees it."""
    items = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in items}


def test_an_ha_upgrade_interrupted_four_times_converges_with_the_api_up(
    cluster: K8sboot,
) -> None:
    if set(_versions(cluster).values()) != {f"v{HA_VERSION}"}:
        pytest.fail(f"the shared cluster is not at {HA_VERSION}: {_versions(cluster)}")
    path = cluster.workdir / "web.yaml"
    path.write_text(
        workloads.to_yaml(
            [
                workloads.deployment("upgraded", 3),
                workloads.pdb("upgraded", "upgraded", min_available=2),
            ]
        )
    )
    cluster.kubectl("apply", "-f", str(path))
    cluster.kubectl("rollout", "status", "deployment/upgraded", "--timeout=120s")
    try:
        _upgrade(cluster)
    finally:  # the modules after this one meet the cluster without it, at what it runs
        cluster.kubectl("delete", "-f", str(path), "--wait=false")
        running = set(_versions(cluster).values())
        if len(running) == 1:
            _set_version(cluster, running.pop().removeprefix("v"))


def _upgrade(cluster: K8sboot) -> None:
    # A skipped minor: refused before anything changes.
    _set_version(cluster, "1.33.1")
    skipped = cluster.run("upgrade", check=False)
    assert skipped.returncode == 3, skipped.stderr
    assert "skips 1.32: kubeadm upgrades one minor at a time" in skipped.stderr
    _set_version(cluster, UPGRADED_VERSION)
    refused = cluster.run("up", "--vagrant", check=False)
    assert refused.returncode == 3 and "run `k8sboot upgrade`" in refused.stderr
    assert set(_versions(cluster).values()) == {f"v{HA_VERSION}"}

    started = time.monotonic()
    with Watch(cluster, "upgraded") as watch:
        # 1. during `kubeadm upgrade apply` on the first control plane
        def in_apply(event: dict[str, Any]) -> bool:
            if event.get("event") == "progress" and "kubeadm upgrade apply" in event.get(
                "message", ""
            ):
                time.sleep(3)
                return True
            return False

        cluster.killed(["upgrade"], in_apply)
        # 2. between control planes: cp2 done, cp3 not begun
        cluster.killed(
            ["upgrade"],
            lambda e: (
                e.get("event") == "action_finished"
                and e.get("action", "").startswith("upgrade cp2:")
            ),
        )
        # 3. during a worker: while it drains
        cluster.killed(
            ["upgrade"],
            lambda e: (
                e.get("event") == "progress" and e.get("message", "").startswith("kubectl drain w")
            ),
        )

        # 4. a node rebooting: w2 goes down while its kubelet package is installed, and
        # comes back; k8sboot is not killed, the run ends as it can (it fails: w2 went away
        # under it), and the next one finishes.
        def reboot_w2(_: object) -> bool:
            cluster.lab.stop("w2", force=True)
            cluster.lab.start("w2")
            return False  # k8sboot goes on

        reboot_started = time.monotonic()
        code, rebooted, stderr = cluster.disturbed(
            ["upgrade"],
            lambda e: (
                e.get("event") == "progress"
                and e.get("host") == "w2"
                and e.get("message", "").startswith("install kubelet")
            ),
            reboot_w2,
        )
        print(
            f"\nthe run w2 rebooted under: exit {code} after "
            f"{time.monotonic() - reboot_started:.0f}s: {stderr.strip()}"
        )
        assert code == 1 and "the connection was lost while" in stderr, (rebooted[-4:], stderr)
        done = cluster.run("upgrade", "-o", "json")
    seconds = time.monotonic() - started
    run = events(done.stdout)
    assert finished(run)["ok"] is True
    print(
        f"\nHA upgrade {HA_VERSION} -> {UPGRADED_VERSION}, killed 3 times, w2 rebooted: "
        f"{seconds:.0f}s; "
        f"API through the VIP asked {watch.asked} times, {len(watch.failed)} failed, longest "
        f"gap {watch.longest_gap:.1f}s; Deployment upgraded (minAvailable 2) at least "
        f"{watch.fewest_available} available"
    )
    assert _versions(cluster) == {n: f"v{UPGRADED_VERSION}" for n in NODES}
    assert cluster.nodes() == {n: True for n in NODES}
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")] == []
    assert watch.fewest_available is not None and watch.fewest_available >= 2
    # The address moves once (its holder is upgraded last). A request in flight to the old
    # holder at that instant is lost: the kernel cannot answer from an address it no longer
    # has, and the poller asks one request at a time. Every other request is answered.
    assert len(watch.failed) <= 1, watch.failed[:5]
    assert watch.longest_gap < 4.0, watch.longest_gap  # a lost request (2 s) and a SYN resent (1 s)
    for name in ("cp1", "cp2", "cp3"):
        left = cluster.lab.ssh(
            name, "sudo ls -d /etc/kubernetes/tmp/kubeadm-backup-etcd-* 2>/dev/null", check=False
        )
        assert left.stdout.strip() == "", f"{name} keeps kubeadm's plaintext etcd copies"
    # The upgrade did the package role's work node by node: recorded, not run again.
    ran = [e["action"] for e in run if e["event"] == "action_finished"]
    assert any(a.startswith("record kube_packages as converged on") for a in ran), ran
    assert not any(a.startswith("Ansible roles") for a in ran), ran
    held = cluster.lab.ssh("w1", "apt-mark showhold").stdout.split()
    assert {"kubeadm", "kubelet", "kubectl"} <= set(held)
    sources = cluster.lab.ssh("w1", "cat /etc/apt/sources.list.d/kubernetes.sources").stdout
    assert "/v1.32/deb/" in sources

    # Converged: nothing to do, in a few seconds.
    started = time.monotonic()
    again = events(cluster.run("upgrade", "-o", "json").stdout)
    assert finished(again)["changed"] == {}
    print(f"no-op upgrade: {time.monotonic() - started:.1f}s")
    # The cluster file's version is what runs: `up` has nothing to change either.
    assert finished(cluster.up())["changed"] == {}

    # A downgrade: refused before anything changes.
    _set_version(cluster, HA_VERSION)
    down = cluster.run("upgrade", check=False)
    _set_version(cluster, UPGRADED_VERSION)
    assert down.returncode == 3 and "k8sboot does not downgrade" in down.stderr
