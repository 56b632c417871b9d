from __future__ import annotations

import pytest

from k8sboot.facts import Facts, HostFacts
from k8sboot.preflight import run_checks

from .conftest import load_data
from .factsdata import AskedAboutEverything, fresh


@pytest.fixture
def cluster(base: dict):
    return load_data(base).cluster


def _checks(cluster, **hosts: HostFacts):
    facts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    facts.update(hosts)
    return {(c.host, c.name): c for c in run_checks(cluster, Facts(hosts=facts))}


def test_fresh_vms_pass(cluster) -> None:
    checks = _checks(cluster)
    assert {c.status for c in checks.values()} == {"ok"}


def test_container_modules_are_skipped_honestly(cluster) -> None:
    lxc = fresh(
        "w1",
        "10.0.0.21",
        container="lxc",
        modules={"overlay": True, "br_netfilter": False},
        sysctls={"net.bridge.bridge-nf-call-iptables": "1"},
    )
    check = _checks(cluster, w1=lxc)[("w1", "kernel modules")]
    assert check.status == "skip"
    assert "inside a lxc container modules cannot be loaded" in check.detail


def test_container_without_bridge_netfilter_fails(cluster) -> None:
    lxc = fresh(
        "w1",
        "10.0.0.21",
        container="lxc",
        modules={"overlay": True, "br_netfilter": False},
        sysctls={},
    )
    check = _checks(cluster, w1=lxc)[("w1", "kernel modules")]
    assert check.status == "fail" and "br_netfilter" in check.detail


def test_swap_in_a_container_fails_on_a_vm_is_fixed(cluster) -> None:
    memory = {"mem_mib": 4096, "swap_mib": 1024, "swap_devices": ["/swap"]}
    checks = _checks(
        cluster,
        w1=fresh("w1", "10.0.0.21", container="lxc", memory=memory),
        cp1=fresh("cp1", "10.0.0.11", memory=memory),
    )
    assert checks[("w1", "swap")].status == "fail"
    assert checks[("cp1", "swap")].status == "ok"
    assert "k8sboot turns it off" in checks[("cp1", "swap")].detail


@pytest.mark.parametrize(
    ("changes", "name", "message"),
    [
        ({"ports": [22, 6443]}, "ports", "6443 already in use"),
        ({"addresses": []}, "node IP", "10.0.0.11 is not an address of this host"),
        ({"cpus": 1}, "CPUs", "a control plane needs 2"),
        ({"memory": {"mem_mib": 1024, "swap_mib": 0}}, "memory", "needs 1700"),
        ({"os": {"id": "centos", "version_id": "7", "pretty": "CentOS 7"}}, "os", "not supported"),
        ({"systemd": False}, "init system", "systemd is not running"),
    ],
)
def test_host_failures_say_what_to_fix(cluster, changes, name, message) -> None:
    check = _checks(cluster, cp1=fresh("cp1", "10.0.0.11", **changes))[("cp1", name)]
    assert check.status == "fail" and message in check.detail


def test_duplicates_and_clock_skew_across_hosts(cluster) -> None:
    clone = fresh("w1", "10.0.0.21", macs={"eth0": "02:aa"}, product_uuid="same")
    original = fresh("cp1", "10.0.0.11", macs={"eth0": "02:aa"}, product_uuid="same")
    checks = _checks(cluster, w1=clone, cp1=original)
    assert checks[("", "unique MAC addresses")].status == "fail"
    assert checks[("", "unique product_uuid")].status == "fail"
    skewed = AskedAboutEverything("w1", fresh("w1", "10.0.0.21").data, skew=120.0)
    assert _checks(cluster, w1=skewed)[("", "clock skew")].status == "fail"


def test_ports_are_not_checked_where_kubeadm_runs(cluster) -> None:
    configured = fresh(
        "cp1", "10.0.0.11", ports=[6443, 2379], exists={"/etc/kubernetes/kubelet.conf": True}
    )
    assert _checks(cluster, cp1=configured)[("cp1", "ports")].status == "skip"
