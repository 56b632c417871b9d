"""A cluster reached only through a bastion (issue 19): this machine, the operator's, opens
no connection to the cluster's machines (an nftables rule rejects each new one), only to the
bastion, a lab machine beside them. `up`, a no-op `up`, `health` and an etcd backup go
through it on all three SSH paths (commands over Fabric with the bastion as gateway, Ansible
and bulk copies through `ssh -W` on the bastion), with every host key pinned, the bastion's
too, so that strict mode runs on the pins afterwards. One host is given by a DNS name only
the bastion resolves, with its node IP beside it."""

from __future__ import annotations

import socket

import pytest
import yaml

from tests.e2e.conftest import FIRST_SHAPE, K8sboot, SharedHA, events, finished
from tests.e2e.labspec import lab_spec
from tests.lab import network

BASTION = "etcd1"  # a lab machine with no role in this cluster: the jump host


@pytest.fixture(scope="module")
def cluster(k8sboot: K8sboot, ha: SharedHA, e2e_lab) -> K8sboot:
    ha.release()
    lab = k8sboot.lab
    lab.up(*FIRST_SHAPE)  # test_etcd's too, which comes next: its machines are made once
    _, url = e2e_lab
    spec = lab_spec(lab, url)
    spec.pop("controlPlaneEndpoint", None)  # one control plane here: no virtual IP
    bastion = lab.machine(BASTION)
    spec["hosts"] = [h for h in spec["hosts"] if h["name"] in ("cp1", "w1")]
    w1 = next(h for h in spec["hosts"] if h["name"] == "w1")
    # A name the bastion resolves and this machine does not: the node IP says the address.
    lab.ssh(BASTION, f"echo '{w1['address']} w1.cluster.internal' | sudo tee -a /etc/hosts")
    w1["nodeIP"], w1["address"] = w1["address"], "w1.cluster.internal"
    spec["ssh"] = {
        "bastion": {
            "address": bastion.ssh_host,
            "user": bastion.ssh_user,
            "port": bastion.ssh_port,
            "key": str(bastion.ssh_key),
        }
    }
    k8sboot.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    return k8sboot


def _connects(address: str) -> bool:
    try:
        socket.create_connection((address, 22), timeout=3).close()
        return True
    except OSError:
        return False


def test_up_health_and_a_backup_through_the_bastion(cluster: K8sboot) -> None:
    lab = cluster.lab
    behind = [lab.machine("cp1").address, lab.machine("w1").address]
    with network.unreachable_from_here(f"k8sboot_bastion_{lab.index}", behind):
        assert not any(_connects(a) for a in behind), "the cluster's machines are reachable"
        assert _connects(lab.machine(BASTION).ssh_host)
        try:
            brought_up = finished(events(cluster.run("up", "-o", "json").stdout))
            assert brought_up["ok"] is True
            assert {"node setup (Ansible)", "kubeadm init", "join workers"} <= set(
                brought_up["changed"]
            )
            assert finished(events(cluster.run("up", "-o", "json").stdout))["changed"] == {}
            health = cluster.run("health", "-o", "json", check=False)
            assert health.returncode == 0, health.stdout[-2000:] + health.stderr
            backup = finished(events(cluster.run("etcd", "backup", "-o", "json").stdout))
            assert backup["ok"] is True
            # Copied into the catalogue through the bastion, and read back whole.
            assert cluster.run("etcd", "list", "--check").returncode == 0
            pinned = (cluster.state / "known_hosts").read_text()
            for name in (lab.machine(BASTION).ssh_host, lab.machine("cp1").ssh_host):
                assert name in pinned, f"{name} is not pinned: {pinned}"
            assert "w1.cluster.internal" in pinned
            # The pins are all strict mode needs.
            spec = yaml.safe_load(cluster.spec.read_text())
            spec["ssh"]["hostKeyPolicy"] = "strict"
            cluster.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
            assert cluster.run("health", check=False).returncode == 0
        finally:
            cluster.run("reset", "--yes", check=False)
