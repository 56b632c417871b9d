"""A stand-in cluster on this machine (1 control plane + 2 workers on 127.0.1.x), driven by
the real kubeadm-like flows and the real kubectl."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.lab.standins import workloads

from .harness import Node, join_config, nodes_ready

pytestmark = [pytest.mark.lab, pytest.mark.slow]

KUBERNETES_VERSION = "v1.33.1"


def test_init_prints_join_commands_and_writes_kubeadm_files(cluster):
    out = cluster.init_output
    assert "Your Kubernetes control-plane has initialized successfully!" in out
    assert "--control-plane --certificate-key" in out
    assert "kubeadm join 127.0.1.1:6443 --token" in out
    root = cluster.cp.root
    for f in (
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ):
        assert (root / "etc/kubernetes" / f).stat().st_mode & 0o777 == 0o600
    for m in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert (root / f"etc/kubernetes/manifests/{m}.yaml").exists()
    etcd = yaml.safe_load((root / "etc/kubernetes/manifests/etcd.yaml").read_text())
    cmd = etcd["spec"]["containers"][0]["command"]
    assert "--data-dir=/var/lib/etcd" in cmd
    assert "--cert-file=/etc/kubernetes/pki/etcd/server.crt" in cmd
    assert "--initial-cluster=cp1=https://127.0.1.1:2380" in cmd
    # The real etcd keeps its data under the node's /var/lib/etcd.
    assert (root / "var/lib/etcd/member/snap/db").exists()
    flags = (root / "var/lib/kubelet/kubeadm-flags.env").read_text()
    assert "--node-ip=127.0.1.1" in flags and "--container-runtime-endpoint=" in flags


def test_nodes_not_ready_until_cni_then_ready(cluster, cni):
    assert nodes_ready(cluster) == {"cp1": "True", "w1": "True", "w2": "True"}
    wide = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    assert "control-plane" in wide and "127.0.1.2" in wide and "v1.33.1" in wide
    # The kubelet performed flannel's install-cni init container from the ConfigMap.
    conflist = cluster.nodes["w1"].root / "etc/cni/net.d/10-flannel.conflist"
    assert json.loads(conflist.read_text())["name"] == "cbr0"


def test_static_pods_show_as_mirror_pods(cluster, cni):
    out = cluster.kubectl("get", "pods", "-A").stdout
    for name in (
        "etcd-cp1",
        "kube-apiserver-cp1",
        "kube-controller-manager-cp1",
        "kube-scheduler-cp1",
    ):
        assert name in out
    pod = json.loads(
        cluster.kubectl("get", "pod", "-n", "kube-system", "etcd-cp1", "-o", "json").stdout
    )
    assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Node"
    cluster.wait(
        "etcd-cp1 Ready",
        lambda: json.loads(
            cluster.kubectl("get", "pod", "-n", "kube-system", "etcd-cp1", "-o", "json").stdout
        )["status"]["containerStatuses"][0]["ready"],
    )
    y = yaml.safe_load(
        cluster.kubectl(
            "get", "pod", "-n", "kube-system", "kube-apiserver-cp1", "-o", "yaml"
        ).stdout
    )
    assert y["spec"]["nodeName"] == "cp1"


@pytest.mark.parametrize("minor", [30, 31, 32, 33])
def test_kubectl_versions_get_cordon_uncordon(cluster, cni, minor):
    out = cluster.kubectl("get", "nodes", minor=minor).stdout
    assert "w2" in out
    assert "cordoned" in cluster.kubectl("cordon", "w2", minor=minor).stdout
    assert "SchedulingDisabled" in cluster.kubectl("get", "node", "w2", minor=minor).stdout
    assert "uncordoned" in cluster.kubectl("uncordon", "w2", minor=minor).stdout
    spec = json.loads(cluster.kubectl("get", "node", "w2", "-o", "json", minor=minor).stdout)[
        "spec"
    ]
    assert not spec.get("unschedulable")


def test_drain_blocked_by_pdb_then_succeeds(cluster, cni, tmp_path):
    objs = [
        workloads.deployment("web", replicas=2, nodes=["w1"]),
        workloads.pdb("web", "web", min_available=2),
        workloads.pod("bare", "w1", emptydir=True),
        workloads.daemonset("agent"),
    ]
    path = tmp_path / "work.yaml"
    path.write_text(workloads.to_yaml(objs))
    cluster.kubectl("apply", "-f", str(path))
    client = cluster.client()
    pods = workloads.wait_running(client, "default", "app=web", 2)
    assert {p["spec"]["nodeName"] for p in pods} == {"w1"}
    assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    workloads.wait_running(client, "default", "app=agent", 3)
    cluster.wait(
        "PDB status",
        lambda: (
            json.loads(cluster.kubectl("get", "pdb", "web", "-o", "json").stdout)["status"].get(
                "currentHealthy"
            )
            == 2
        ),
    )

    blocked = cluster.kubectl(
        "drain",
        "w1",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--timeout=8s",
        check=False,
    )
    assert blocked.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in blocked.stderr

    # Let the pods move: allow scheduling anywhere, relax the budget, drain again.
    cluster.kubectl(
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/template/spec/affinity"}]',
    )
    cluster.kubectl("patch", "pdb", "web", "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
    ok = cluster.kubectl(
        "drain", "w1", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=90s"
    )
    assert "node/w1 drained" in ok.stdout
    left = json.loads(
        cluster.kubectl(
            "get", "pods", "-A", "--field-selector", "spec.nodeName=w1", "-o", "json"
        ).stdout
    )["items"]
    assert {p["metadata"]["labels"].get("app") for p in left} <= {"agent", "flannel", None} | {
        p["metadata"]["labels"].get("app")
        for p in left
        if p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    }
    workloads.wait_running(client, "default", "app=web", 2, timeout=60)
    cluster.kubectl("uncordon", "w1")


def test_bootstrap_token_is_limited_to_what_join_needs(cluster):
    token, _ = cluster.token_and_hash()
    base = [
        "--token",
        token,
        "--kubeconfig",
        "/dev/null",
        "--server",
        "https://127.0.1.1:6443",
        "--certificate-authority",
        str(cluster.cp.root / "etc/kubernetes/pki/ca.crt"),
    ]
    import subprocess

    from .harness import kubectl_path

    def kc(*args):
        return subprocess.run([kubectl_path(33), *base, *args], capture_output=True, text=True)

    ok = kc("get", "configmap", "-n", "kube-system", "kubeadm-config", "-o", "name")
    assert ok.returncode == 0, ok.stderr
    denied = kc("get", "secrets", "-n", "kube-system")
    assert denied.returncode != 0
    assert (
        f'User "system:bootstrap:{token.split(".")[0]}" cannot list resource "secrets"'
        in denied.stderr
    )
    cluster.cp.kubeadm("token", "delete", token, check=True)
    gone = kc("get", "configmap", "-n", "kube-system", "kubeadm-config")
    assert "Unauthorized" in gone.stderr or "must be logged in" in gone.stderr


def _kubeadm_certs_keys(cluster) -> set[str]:
    secret = cluster.kubectl("get", "secret", "-n", "kube-system", "kubeadm-certs", "-o", "json")
    return set(json.loads(secret.stdout)["data"])


def test_upload_certs_without_config_takes_kubeadms_defaults(cluster):
    """kubernetes v1.33.0 cmd/kubeadm/app/cmd/init.go (newInitData loads the --config file
    or defaults: local etcd) and cmd/kubeadm/app/phases/copycerts/copycerts.go
    (certsToTransfer: etcd/ca.* for local etcd, the external etcd files otherwise). Without
    --config the Secret lacks external etcd's certificates (kubernetes#84627), whatever the
    cluster's kubeadm-config says."""
    base = {"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.pub", "sa.key"}
    cluster.cp.kubeadm("init", "phase", "upload-certs", "--upload-certs", check=True)
    assert _kubeadm_certs_keys(cluster) == base | {"etcd-ca.crt", "etcd-ca.key"}
    external = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "kubernetesVersion": KUBERNETES_VERSION,
        "etcd": {
            "external": {
                "endpoints": ["https://127.0.1.1:2379"],
                "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
                "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
            }
        },
    }
    config = cluster.cp.write("upload-certs.yaml", [external])
    cluster.cp.kubeadm(
        "init", "phase", "upload-certs", "--upload-certs", "--config", str(config), check=True
    )
    assert _kubeadm_certs_keys(cluster) == base | {
        "external-etcd-ca.crt",
        "external-etcd.crt",
        "external-etcd.key",
    }


def test_control_plane_join_refuses_wrong_and_expired_certificate_key(cluster, tmp_path):
    out = cluster.cp.kubeadm("init", "phase", "upload-certs", "--upload-certs", check=True).stdout
    key = out.strip().splitlines()[-1]
    assert len(key) == 64
    node = Node(tmp_path, "cp9", "127.0.1.9", 10299, cluster.version)
    try:
        token, ca_hash = cluster.token_and_hash()
        wrong = "0" * 64
        cfg = node.write(
            "join.yaml",
            join_config(
                node, cluster.api, "127.0.1.1:6443", token, ca_hash, control_plane_key=wrong
            ),
        )
        bad = node.kubeadm("join", "--config", str(cfg), "--ignore-preflight-errors=all")
        assert bad.returncode == 1
        assert (
            "error decoding secret data with provided key: cipher: message authentication "
            "failed" in bad.stderr
        )
        # Expire the token that owns kubeadm-certs: the token cleaner deletes it and the
        # garbage collector then deletes the Secret, as upstream's 2-hour expiry does.
        secret = json.loads(
            cluster.kubectl(
                "get", "secret", "-n", "kube-system", "kubeadm-certs", "-o", "json"
            ).stdout
        )
        owner = secret["metadata"]["ownerReferences"][0]["name"]
        import base64

        past = base64.b64encode(b"2001-01-01T00:00:00Z").decode()
        cluster.kubectl(
            "patch",
            "secret",
            "-n",
            "kube-system",
            owner,
            "--type=merge",
            "-p",
            json.dumps({"data": {"expiration": past}}),
        )
        cluster.wait(
            "kubeadm-certs to expire",
            lambda: (
                cluster.kubectl(
                    "get", "secret", "-n", "kube-system", "kubeadm-certs", check=False
                ).returncode
                != 0
            ),
        )
        cfg = node.write(
            "join.yaml",
            join_config(node, cluster.api, "127.0.1.1:6443", token, ca_hash, control_plane_key=key),
        )
        expired = node.kubeadm("join", "--config", str(cfg), "--ignore-preflight-errors=all")
        assert expired.returncode == 1
        assert (
            'Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This '
            "Secret might have expired." in expired.stderr
        )
        assert expired.stderr.startswith(
            "error execution phase control-plane-prepare/download-certs"
        )
    finally:
        node.close()


def test_certs_check_expiration_json(cluster):
    out = cluster.cp.kubeadm("certs", "check-expiration", "-o", "json", check=True).stdout
    doc = json.loads(out)
    assert doc["kind"] == "CertificateExpirationInfo"
    names = {c["name"] for c in doc["certificates"]}
    assert {"apiserver", "etcd-server", "admin.conf", "super-admin.conf"} <= names
    api = next(c for c in doc["certificates"] if c["name"] == "apiserver")
    assert api["caName"] == "ca" and not api["missing"] and api["residualTime"] > 364 * 86400
    assert {c["name"] for c in doc["certificateAuthorities"]} == {"ca", "etcd-ca", "front-proxy-ca"}


def test_reset_worker_then_delete_node(cluster, cni):
    # A worker of its own: the other tests of the module need w1 and w2, in any order.
    w3 = cluster.join_worker("w3", "127.0.1.4", 10251, ignored=("Port-10250",))
    cluster.wait(
        "w3's CNI configuration",
        lambda: (w3.root / "etc/cni/net.d/10-flannel.conflist").exists(),
    )
    out = w3.kubeadm("reset", "-f", check=True).stdout
    assert "[reset] Stopping the kubelet service" in out
    assert not (w3.root / "etc/kubernetes/kubelet.conf").exists()
    assert not (w3.root / "var/lib/kubelet/config.yaml").exists()
    # CNI configuration is left behind, like upstream.
    assert (w3.root / "etc/cni/net.d/10-flannel.conflist").exists()
    assert 'node "w3" deleted' in cluster.kubectl("delete", "node", "w3").stdout
    assert "w3" not in cluster.kubectl("get", "nodes").stdout
    # Pods of the deleted node are garbage-collected (PodGC).
    cluster.wait(
        "w3's pods to go",
        lambda: (
            not json.loads(
                cluster.kubectl(
                    "get", "pods", "-A", "--field-selector", "spec.nodeName=w3", "-o", "json"
                ).stdout
            )["items"]
        ),
    )
    time.sleep(0)
