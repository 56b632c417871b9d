"""The upload-config phase, shared by `init` and `upgrade apply` as upstream shares it
(cmd/kubeadm/app/phases/uploadconfig/uploadconfig.go, v1.31-v1.33): kubeadm-config with
the ClusterConfiguration in this kubeadm's API version, kubelet-config, and the RBAC that
lets joining nodes read them."""

from __future__ import annotations

import yaml

from ..client import Client
from . import tokens
from .common import log
from .config import Config, cluster_document


def upload(client: Client, cfg: Config, kubelet: dict) -> None:
    log(
        '[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the '
        '"kube-system" Namespace'
    )
    client.create_or_update(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {
                "ClusterConfiguration": yaml.safe_dump(cluster_document(cfg), sort_keys=False)
            },
        }
    )
    log(
        '[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the '
        "configuration for the kubelets in the cluster"
    )
    client.create_or_update(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
            "data": {"kubelet": yaml.safe_dump(kubelet, sort_keys=True)},
        }
    )
    for obj in tokens.config_rbac():
        client.create_or_update(obj)
