"""kube-vip stand-in on this host: how the kubelet runs it, its configuration, and its Lease
election against a stand-in API server (no VIP is added here: that needs a lab machine, see
tests/integration/test_standins_lab.py)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.lab.standins import kube_vip
from tests.lab.standins.kubelet import runtime

KUBERNETES_VERSION = "v1.33.1"
MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: kube-vip, namespace: kube-system}
spec:
  hostNetwork: true
  containers:
    - name: kube-vip
      image: "ghcr.io/kube-vip/kube-vip:v0.8.9"
      args: ["manager"]
      env:
        - {name: address, value: "192.168.56.10"}
        - {name: port, value: "6443"}
        - {name: vip_interface, value: eth1}
        - {name: vip_cidr, value: "32"}
        - {name: vip_arp, value: "true"}
        - {name: cp_enable, value: "true"}
        - {name: vip_leaderelection, value: "true"}
        - {name: vip_leasename, value: plndr-cp-lock}
        - {name: vip_leaseduration, value: "5"}
        - {name: vip_renewdeadline, value: "3"}
        - {name: vip_retryperiod, value: "1"}
      volumeMounts:
        - {name: kubeconfig, mountPath: /etc/kubernetes/admin.conf}
  hostAliases:
    - {hostnames: [kubernetes], ip: 127.0.0.1}
  volumes:
    - name: kubeconfig
      hostPath: {path: /etc/kubernetes/super-admin.conf}
"""


def test_kubelet_runs_kube_vip_with_its_args_env_mounts_and_aliases(tmp_path):
    spec = yaml.safe_load(MANIFEST)["spec"]
    container = runtime.Container(
        "kube-system/kube-vip-cp1", spec["containers"][0], str(tmp_path), spec
    )
    assert container.argv[-2:] == ["standins.kube_vip", "manager"]
    env = container._env()
    assert env["address"] == "192.168.56.10" and env["vip_interface"] == "eth1"
    assert json.loads(env["K8SBOOT_STANDIN_MOUNTS"]) == {
        "/etc/kubernetes/admin.conf": "/etc/kubernetes/super-admin.conf"
    }
    assert json.loads(env["K8SBOOT_STANDIN_HOST_ALIASES"]) == [
        {"hostnames": ["kubernetes"], "ip": "127.0.0.1"}
    ]
    # A kube-vip tag is not a Kubernetes version.
    assert env.get("K8SBOOT_STANDIN_VERSION") != "v0.8.9"
    # kubeadm's own manifests name the binary in command[0]: it is not passed on.
    apiserver = {"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.33.1"}
    apiserver["command"] = ["kube-apiserver", "--secure-port=6443"]
    assert runtime.command_for(apiserver)[-2:] == ["standins.apiserver", "--secure-port=6443"]


def test_configuration_from_the_environment():
    env = {e["name"]: e["value"] for e in yaml.safe_load(MANIFEST)["spec"]["containers"][0]["env"]}
    cfg = kube_vip.Config(env)
    assert (cfg.address, cfg.port, cfg.interface, cfg.cidr) == ("192.168.56.10", 6443, "eth1", 32)
    assert cfg.arp and cfg.control_plane and cfg.leader_election
    assert (cfg.lease_duration, cfg.renew_deadline, cfg.retry_period) == (5, 3, 1)
    assert cfg.problems() == []
    assert kube_vip.Config({"address": "vip.example.com"}).problems()
    assert kube_vip.resolve_alias("kubernetes", [{"hostnames": ["kubernetes"], "ip": "1.2.3.4"}])
    assert kube_vip.main(["version"]) == 1


def _config(name: str) -> kube_vip.Config:
    return kube_vip.Config(
        {
            "address": "192.168.56.10",
            "vip_interface": "eth1",
            "cp_enable": "true",
            "vip_leaderelection": "true",
            "vip_leasename": "standin-test-lock",
            "vip_leaseduration": "2",
            "vip_renewdeadline": "1",
            "vip_nodename": name,
        }
    )


@pytest.mark.lab
@pytest.mark.slow
def test_lease_election_follows_client_go_rules(cluster):
    a = kube_vip.Elector(cluster.client(), _config("cp-a"))
    b = kube_vip.Elector(cluster.client(), _config("cp-b"))
    assert a.try_acquire_or_renew()  # creates the Lease
    assert not b.try_acquire_or_renew()  # held, and just renewed
    lease = cluster.client().get("Lease", "standin-test-lock", "kube-system")
    assert lease["spec"]["holderIdentity"] == "cp-a"
    assert lease["spec"]["leaseDurationSeconds"] == 2
    assert a.try_acquire_or_renew()  # renewal keeps acquireTime
    again = cluster.client().get("Lease", "standin-test-lock", "kube-system")
    assert again["spec"]["acquireTime"] == lease["spec"]["acquireTime"]
    # a stops renewing: b takes over once the record went unchanged for 2 s, as b saw it.
    deadline = time.monotonic() + 10
    while not b.try_acquire_or_renew():
        assert time.monotonic() < deadline, "b never took the expired Lease"
        time.sleep(0.3)
    taken = cluster.client().get("Lease", "standin-test-lock", "kube-system")["spec"]
    assert taken["holderIdentity"] == "cp-b" and taken["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()
    # Releasing (ReleaseOnCancel) lets the other side in at once.
    b.release()
    assert cluster.client().get("Lease", "standin-test-lock", "kube-system")["spec"][
        "holderIdentity"
    ] in ("", None)
    assert a.try_acquire_or_renew()
