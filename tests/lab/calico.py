"""A stand-in for the Tigera operator's release manifest, for `cni: calico` in the lab.

k8sboot applies Calico as upstream documents it: the operator's release manifest
(tigera-operator.yaml, pinned by sha256), then its own Installation and APIServer. No
registry here serves the operator's image, and the stand-in kubelet runs no containers, so
the lab serves this manifest in its place, beside the stand-in packages, and lab cluster
files give its sha256 (networking.calicoOperator). It has what k8sboot relies on:
- the operator's CRDs by their upstream names, group, version and scope
  (installations.operator.tigera.io, apiservers.operator.tigera.io; cluster-scoped v1),
  which k8sboot waits for before it applies its Installation and APIServer;
- what the operator would create from the Installation, created directly: the calico-system
  namespace and a calico-node DaemonSet whose install-cni init container copies the CNI
  configuration into /etc/cni/net.d, which the stand-in kubelet carries out, so that nodes
  turn Ready because Calico was applied.
Its schemas keep every field (x-kubernetes-preserve-unknown-fields), where upstream's list
them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

PATH = "calico/tigera-operator.yaml"  # below the lab's package repository

CNI_CONFIG = {
    "name": "k8s-pod-network",
    "cniVersion": "0.3.1",
    "plugins": [
        {"type": "calico", "datastore_type": "kubernetes", "ipam": {"type": "calico-ipam"}},
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
    ],
}


def _crd(plural: str, kind: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.operator.tigera.io"},
        "spec": {
            "group": "operator.tigera.io",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Cluster",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def manifest() -> str:
    labels = {"k8s-app": "calico-node"}
    documents = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tigera-operator"}},
        _crd("installations", "Installation"),
        _crd("apiservers", "APIServer"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "calico-system"}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cni-config", "namespace": "calico-system"},
            "data": {"10-calico.conflist": yaml.safe_dump(CNI_CONFIG)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "calico-node", "namespace": "calico-system"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "hostNetwork": True,
                        "tolerations": [{"operator": "Exists"}],
                        "initContainers": [
                            {
                                "name": "install-cni",
                                "image": "quay.io/calico/cni:v3.29.3",
                                "command": [
                                    "cp",
                                    "-f",
                                    "/calico-cni/10-calico.conflist",
                                    "/host/etc/cni/net.d/10-calico.conflist",
                                ],
                                "volumeMounts": [
                                    {"name": "cni-config", "mountPath": "/calico-cni"},
                                    {"name": "cni-net-dir", "mountPath": "/host/etc/cni/net.d"},
                                ],
                            }
                        ],
                        "containers": [
                            {"name": "calico-node", "image": "quay.io/calico/node:v3.29.3"}
                        ],
                        "volumes": [
                            {"name": "cni-config", "configMap": {"name": "cni-config"}},
                            {"name": "cni-net-dir", "hostPath": {"path": "/etc/cni/net.d"}},
                        ],
                    },
                },
            },
        },
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)


def publish(repo_dir: Path) -> str:
    """Write it under `repo_dir`; its sha256."""
    text = manifest().encode()
    target = repo_dir / PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text)
    return hashlib.sha256(text).hexdigest()


def cluster_settings(repo_url: str) -> dict[str, object]:
    """The `networking` settings of a lab cluster file that uses Calico."""
    return {
        "cni": "calico",
        "calicoOperator": {
            "url": f"{repo_url.rstrip('/')}/{PATH}",
            "sha256": hashlib.sha256(manifest().encode()).hexdigest(),
        },
    }
