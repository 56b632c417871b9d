"""kubeadm stand-in: strict decoding and version rules of the configuration file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .harness import LAB, standin_env


def kubeadm(tmp_path: Path, version: str, docs: list[dict], *args: str):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump_all(docs))
    env = standin_env(tmp_path, version)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "standins.kubeadm",
            "init",
            "--config",
            str(cfg),
            "--skip-phases=preflight,certs,kubeconfig,etcd,control-plane,"
            "kubelet-start,wait-control-plane,upload-config,upload-certs,"
            "mark-control-plane,bootstrap-token,kubelet-finalize,addon",
            *args,
        ],
        cwd=LAB,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def init_docs(api: str) -> list[dict]:
    return [
        {
            "apiVersion": api,
            "kind": "InitConfiguration",
            "localAPIEndpoint": {"advertiseAddress": "10.0.0.1", "bindPort": 6443},
            "nodeRegistration": {"name": "cp1"},
        },
        {"apiVersion": api, "kind": "ClusterConfiguration"},
    ]


def test_valid_config_is_accepted(tmp_path):
    p = kubeadm(tmp_path, "v1.33.1", init_docs("kubeadm.k8s.io/v1beta4"))
    assert p.returncode == 0, p.stderr
    assert "[init] Using Kubernetes version: v1.33.1" in p.stdout


def test_unknown_field_is_rejected_like_upstream(tmp_path):
    docs = init_docs("kubeadm.k8s.io/v1beta4")
    docs[0]["nodeRegistration"]["nodeIP"] = "10.0.0.1"
    docs[1]["networking"] = {"podCIDR": "10.244.0.0/16"}
    p = kubeadm(tmp_path, "v1.33.1", docs[:1])
    assert p.returncode == 1
    assert (
        'error unmarshaling configuration schema.GroupVersionKind{Group:"kubeadm.k8s.io", '
        'Version:"v1beta4", Kind:"InitConfiguration"}: strict decoding error: unknown field '
        '"nodeRegistration.nodeIP"'
    ) in p.stderr
    del docs[0]["nodeRegistration"]["nodeIP"]
    p = kubeadm(tmp_path, "v1.33.1", docs)
    assert p.returncode == 1
    assert (
        'Kind:"ClusterConfiguration"}: strict decoding error: unknown field '
        '"networking.podCIDR"' in p.stderr
    )


def test_v1beta4_is_unknown_to_kubeadm_1_30(tmp_path):
    p = kubeadm(tmp_path, "v1.30.13", init_docs("kubeadm.k8s.io/v1beta4"))
    assert p.returncode == 1
    assert (
        'no kind "InitConfiguration" is registered for version "kubeadm.k8s.io/v1beta4"' in p.stderr
    )


def test_v1beta3_still_read_by_1_33_with_a_deprecation_warning(tmp_path):
    docs = init_docs("kubeadm.k8s.io/v1beta3")
    docs[0]["nodeRegistration"]["kubeletExtraArgs"] = {"node-ip": "10.0.0.1"}
    p = kubeadm(tmp_path, "v1.33.1", docs)
    assert p.returncode == 0, p.stderr
    assert 'uses a deprecated API spec: "kubeadm.k8s.io/v1beta3"' in p.stderr


def test_v1beta4_list_form_is_wrong_for_v1beta3(tmp_path):
    docs = init_docs("kubeadm.k8s.io/v1beta3")
    docs[1]["apiServer"] = {"timeoutForControlPlane": "4m0s", "extraEnvs": []}
    p = kubeadm(tmp_path, "v1.30.13", docs)
    assert p.returncode == 1
    assert 'unknown field "apiServer.extraEnvs"' in p.stderr


def test_component_config_unknown_field_warns_only(tmp_path):
    docs = [
        *init_docs("kubeadm.k8s.io/v1beta4"),
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "systemd",
            "cgroupDriverr": "systemd",
        },
    ]
    p = kubeadm(tmp_path, "v1.33.1", docs)
    assert p.returncode == 0, p.stderr
    assert 'unknown field "cgroupDriverr"' in p.stderr


def test_control_plane_version_skew_is_refused(tmp_path):
    docs = init_docs("kubeadm.k8s.io/v1beta4")
    docs[1]["kubernetesVersion"] = "v1.30.0"
    p = kubeadm(tmp_path, "v1.33.1", docs)
    assert p.returncode == 1
    assert "only supports deploying clusters with the control plane version >= 1.32.0" in p.stderr


@pytest.mark.parametrize("flag", ["--bogus"])
def test_unknown_flag_exits_1(tmp_path, flag):
    p = kubeadm(tmp_path, "v1.33.1", init_docs("kubeadm.k8s.io/v1beta4"), flag)
    assert p.returncode == 1 and "unknown flag" in p.stderr
