from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from k8sboot.cli.render import files_for
from k8sboot.render import (
    PLACEHOLDER_TOKEN,
    JoinSecrets,
    kube_vip_file,
    kubeadm_file,
    upload_certs_file,
)
from k8sboot.resources import data_dir
from k8sboot.spec import load_spec
from k8sboot.versions import SUPPORTED_MINORS

from .apifields import unknown_keys
from .conftest import EXAMPLES, load_data

GOLDEN = Path(__file__).parent / "golden"
EXAMPLES_DIR = EXAMPLES[0].parent
UPDATE = os.environ.get("K8SBOOT_UPDATE_GOLDEN") == "1"


def _rendered(path: Path) -> dict[str, str]:
    cluster = load_spec(path).cluster
    return {
        f"{host.name}{file.path}": file.content
        for host in cluster.hosts
        for file in files_for(cluster, host)
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden_files(example: Path) -> None:
    """Every file of every host matches its reviewed copy (K8SBOOT_UPDATE_GOLDEN=1 rewrites)."""
    golden_dir = GOLDEN / example.stem
    rendered = _rendered(example)
    if UPDATE:
        for name, content in rendered.items():
            (golden_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / name).write_text(content)
    expected = {
        str(p.relative_to(golden_dir)): p.read_text() for p in golden_dir.rglob("*") if p.is_file()
    }
    assert sorted(rendered) == sorted(expected)
    for name, content in rendered.items():
        assert content == expected[name], f"{example.stem}/{name} differs from its golden copy"


@pytest.mark.parametrize("during_init", [True, False], ids=["during-init", "after-init"])
def test_kube_vip_golden(during_init: bool) -> None:
    """kube-vip's static pod (rendered at run time, so not among `render`'s files)."""
    cluster = load_spec(EXAMPLES_DIR / "ha-kube-vip.yaml").cluster
    content = kube_vip_file(cluster, "eth1", during_init).content
    golden = GOLDEN / "kube-vip" / ("during-init.yaml" if during_init else "after-init.yaml")
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(content)
    assert content == golden.read_text()


def _kube_documents(content: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(content) if d]


def _cluster_for(minor: int, base: dict):
    base["kubernetes"] = {"version": f"1.{minor}.0", "certSANs": ["api.example.com"]}
    base["hosts"] += [
        {"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]},
        {"name": "cp3", "address": "10.0.0.13", "roles": ["control-plane", "worker"]},
    ]
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    return load_data(base).cluster


@pytest.mark.parametrize("minor", SUPPORTED_MINORS)
def test_every_key_exists_upstream(minor: int, base: dict) -> None:
    cluster = _cluster_for(minor, base)
    secrets = JoinSecrets("abcdef.0123456789abcdef", "sha256:" + "0" * 64, "1" * 64)
    documents = []
    for host in cluster.hosts:
        for secret in (None, secrets):
            documents += _kube_documents(kubeadm_file(cluster, host, secret).content)
    kinds = {(d["apiVersion"], d["kind"]) for d in documents}
    api = "kubeadm.k8s.io/v1beta3" if minor == 30 else "kubeadm.k8s.io/v1beta4"
    assert kinds == {
        (api, "InitConfiguration"),
        (api, "ClusterConfiguration"),
        (api, "JoinConfiguration"),
        ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
        ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"),
    }
    for document in documents:
        assert unknown_keys(document, minor) == [], document["kind"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_keys_exist_upstream(example: Path) -> None:
    cluster = load_spec(example).cluster
    for host in cluster.hosts:
        for file in files_for(cluster, host):
            if file.path.name.startswith("kubeadm-"):
                for document in _kube_documents(file.content):
                    assert unknown_keys(document, cluster.release.minor) == []


def test_the_field_check_catches_a_wrong_key() -> None:
    bad = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": {"a": "b"}},
        "networking": {"podCIDR": "x"},
    }
    assert unknown_keys(bad, 33) == [
        "ClusterConfiguration.apiServer.extraArgs (expected a list)",
        "ClusterConfiguration.networking.podCIDR",
    ]


def test_extra_args_form_follows_the_api_version(base: dict) -> None:
    for minor, expected in (
        (30, {"node-ip": "10.0.0.11"}),
        (31, [{"name": "node-ip", "value": "10.0.0.11"}]),
    ):
        base["kubernetes"] = {"version": f"1.{minor}.0"}
        cluster = load_data(base).cluster
        init = _kube_documents(kubeadm_file(cluster, cluster.hosts[0]).content)[0]
        assert init["nodeRegistration"]["kubeletExtraArgs"] == expected


def test_cgroup_drivers_agree(base: dict) -> None:
    cluster = load_data(base).cluster
    files = {str(f.path): f.content for f in files_for(cluster, cluster.hosts[0])}
    containerd = tomllib.loads(files["/etc/containerd/config.toml"])
    cri = containerd["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10"
    kubelet = next(
        d
        for d in _kube_documents(files["/etc/k8sboot/kubeadm-init.yaml"])
        if d["kind"] == "KubeletConfiguration"
    )
    assert kubelet["cgroupDriver"] == "systemd"


def test_registry_mirrors(base: dict) -> None:
    base["containerRuntime"] = {"registryMirrors": {"docker.io": ["https://m1", "http://m2"]}}
    cluster = load_data(base).cluster
    files = {str(f.path): f.content for f in files_for(cluster, cluster.hosts[1])}
    hosts = tomllib.loads(files["/etc/containerd/certs.d/docker.io/hosts.toml"])
    assert hosts["server"] == "https://registry-1.docker.io"
    assert list(hosts["host"]) == ["https://m1", "http://m2"]


def test_registry_mirrors_by_containerd_host_names(base: dict) -> None:
    """containerd's _default applies to every registry without a directory of its own;
    without `server` it falls back to the registry the image names (docs/hosts.md)."""
    registries = ["_default", "reg.internal:5000", "10.0.0.5:5000", "[fd00::5]:5000"]
    base["containerRuntime"] = {"registryMirrors": {r: ["https://m1"] for r in registries}}
    cluster = load_data(base).cluster
    files = {str(f.path): f.content for f in files_for(cluster, cluster.hosts[1])}
    hosts = tomllib.loads(files["/etc/containerd/certs.d/_default/hosts.toml"])
    assert hosts == {"host": {"https://m1": {"capabilities": ["pull", "resolve"]}}}
    for registry in registries[1:]:  # containerd's other names for a registry: host[:port]
        hosts = tomllib.loads(files[f"/etc/containerd/certs.d/{registry}/hosts.toml"])
        assert hosts["server"] == f"https://{registry}"


def test_node_ip_and_endpoint(base: dict) -> None:
    base["hosts"][1]["nodeIP"] = "192.168.56.21"
    base["hosts"][1]["address"] = "203.0.113.21"
    cluster = load_data(base).cluster
    join = _kube_documents(kubeadm_file(cluster, cluster.hosts[1]).content)[0]
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "10.0.0.11:6443"
    assert join["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "node-ip", "value": "192.168.56.21"}
    ]
    assert "controlPlane" not in join


def test_untainted_when_control_plane_is_also_a_worker(base: dict) -> None:
    base["hosts"] = [{"name": "solo", "address": "10.0.0.5", "roles": ["control-plane", "worker"]}]
    cluster = load_data(base).cluster
    init = _kube_documents(kubeadm_file(cluster, cluster.hosts[0]).content)[0]
    assert init["nodeRegistration"]["taints"] == []


def test_placeholders_never_look_like_secrets(base: dict) -> None:
    cluster = load_data(base).cluster
    join = kubeadm_file(cluster, cluster.hosts[1])
    assert PLACEHOLDER_TOKEN in join.content
    assert not re.search(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b", join.content)
    assert join.secret is False


def test_real_secrets_make_a_private_file(base: dict) -> None:
    base["hosts"].append({"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]})
    base["hosts"].append({"name": "cp3", "address": "10.0.0.13", "roles": ["control-plane"]})
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    cluster = load_data(base).cluster
    secrets = JoinSecrets("abcdef.0123456789abcdef", "sha256:" + "a" * 64, "b" * 64)
    join = kubeadm_file(cluster, cluster.host("cp2"), secrets)
    assert join.secret and join.mode == 0o600
    document = _kube_documents(join.content)[0]
    assert document["controlPlane"]["certificateKey"] == "b" * 64
    assert document["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "10.0.0.12"
    assert "abcdef" not in repr(secrets) and "abcdef" not in repr(join)
    with pytest.raises(ValueError, match="needs a certificate key"):
        kubeadm_file(cluster, cluster.host("cp2"), JoinSecrets("t", "h"))


def test_flannel_manifest(base: dict) -> None:
    base["networking"] = {"podSubnet": "10.50.0.0/16"}
    cluster = load_data(base).cluster
    cni = next(f for f in files_for(cluster, cluster.hosts[0]) if f.path.name == "cni.yaml")
    documents = _kube_documents(cni.content)
    assert all(d["apiVersion"] and d["kind"] and d["metadata"]["name"] for d in documents)
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    assert json.loads(config["data"]["net-conf.json"])["Network"] == "10.50.0.0/16"
    json.loads(config["data"]["cni-conf.json"])
    daemonset = next(d for d in documents if d["kind"] == "DaemonSet")
    flanneld = daemonset["spec"]["template"]["spec"]["containers"][0]
    assert "--iface=$(NODE_IP)" in flanneld["args"]


def test_no_cni_means_no_manifest(base: dict) -> None:
    base["networking"] = {"cni": "none"}
    cluster = load_data(base).cluster
    assert all(f.path.name != "cni.yaml" for f in files_for(cluster, cluster.hosts[0]))


def test_templates_hold_no_logic_beyond_loops_and_conditionals() -> None:
    allowed = {"if", "elif", "else", "endif", "for", "endfor", "include"}
    for template in data_dir("templates").rglob("*.j2"):
        tags = re.findall(r"{%-?\s*(\w+)", template.read_text())
        assert set(tags) <= allowed, f"{template.name} uses {set(tags) - allowed}"


def test_upload_certs_gets_the_clusters_external_etcd() -> None:
    """`kubeadm init phase upload-certs` is given the cluster's ClusterConfiguration on any
    control plane: with kubeadm's defaults (local etcd) the kubeadm-certs Secret lacks
    external etcd's certificates and a control-plane join fails (kubernetes#84627)."""
    cluster = load_spec(Path("inventories/external-etcd.yaml")).cluster
    for host in cluster.control_planes:
        file = upload_certs_file(cluster, host)
        assert file.mode == 0o600
        documents = {d["kind"]: d for d in _kube_documents(file.content)}
        external = documents["ClusterConfiguration"]["etcd"]["external"]
        assert external["endpoints"] == [f"https://{h.ip}:2379" for h in cluster.etcd_members]
        assert external["caFile"] == "/etc/kubernetes/pki/etcd/ca.crt"
        assert documents["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == host.ip
        for document in documents.values():
            assert unknown_keys(document, cluster.release.minor) == []
