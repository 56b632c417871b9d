"""Three control planes behind kube-vip and two workers, brought up by `up --vagrant`: the
control planes join one at a time, the kubeconfig points at the virtual IP, etcd has three
members, and a re-run changes nothing. The cluster stays up for the health and node
maintenance modules."""

from __future__ import annotations

from tests.e2e.conftest import SharedHA, finished


def test_three_control_planes_behind_kube_vip(ha: SharedHA) -> None:
    cluster = ha.acquire()
    lab = cluster.lab
    changed = {step for run in ha.bring_up for step in finished(run)["changed"]}
    assert "join control planes" in changed
    assert cluster.nodes() == {n: True for n in ("cp1", "cp2", "cp3", "w1", "w2")}
    assert f"server: https://{lab.subnet}.10:6443" in (cluster.state / "kubeconfig").read_text()
    members = lab.ssh(
        "cp1",
        "sudo ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 "
        "--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt "
        "--key /etc/kubernetes/pki/etcd/server.key member list -w json",
    ).stdout
    assert members.count('"name"') == 3
    assert finished(cluster.up())["changed"] == {}
