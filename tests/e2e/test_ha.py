"""Three control planes behind kube-vip and two workers, brought up by `up --vagrant`: the
control planes join one at a time, the kubeconfig points at the virtual IP, etcd has three
members, and a re-run changes nothing. The cluster stays up for the health and node
maintenance modules."""

from __future__ import annotations

import time

from tests.e2e.conftest import SharedHA, events, finished


def test_an_init_killed_half_way_is_finished_by_the_next_run(ha: SharedHA) -> None:
    """k8sboot and kubeadm killed on cp1 once init has written the control plane's static
    pods (and admin.conf), before it uploads its configuration: the next run must not take
    the cluster for initialised (joins would fail: no cluster-info), nor reset a control
    plane that answers; it runs init's remaining phases, with kube-vip's manifest in place
    so that init reaches the virtual IP (issue 14.2)."""
    cluster = ha.prepare()
    lab = cluster.lab
    cluster.run("reset", "--vagrant", "--yes")  # whatever the modules before left
    # Killed once the kubelet runs with init's configuration (kubelet-start follows the
    # control-plane phase; a kill between the two would leave the kubelet stopped).
    ready = (
        "test -e /etc/kubernetes/manifests/kube-apiserver.yaml"
        " && test -e /var/lib/kubelet/config.yaml && systemctl is-active -q kubelet"
    )
    seen = cluster.kill_during(
        "kubeadm init", 0.0, when=lambda: lab.ssh("cp1", ready, check=False).ok
    )
    assert any(e.get("step") == "kubeadm init" for e in seen), "never reached kubeadm init"
    lab.ssh("cp1", "sudo pkill -9 -x kubeadm", check=False)
    assert lab.ssh("cp1", "test -e /etc/kubernetes/manifests/kube-vip.yaml", check=False).ok
    # The kubelet goes on running the static pods, kube-vip among them: the API answers
    # through the virtual IP a few seconds later. Until then `up` cannot tell a half-done
    # init from a cluster whose API is down, and stops with the error kubectl gave.
    answers = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz"
    deadline = time.monotonic() + 120
    while not lab.ssh("cp1", answers, check=False).ok:
        assert time.monotonic() < deadline, "the API never answered after the kill"
        time.sleep(1)
    done = cluster.run("up", "--vagrant", "-o", "json", check=False)
    run = events(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    init = [e for e in run if e["event"] == "action_finished" and e["step"] == "kubeadm init"]
    assert init and "from wait-control-plane on" in init[0]["action"], init
    assert cluster.nodes() == {n: True for n in ("cp1", "cp2", "cp3", "w1", "w2")}
    ha.adopt(run)


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
