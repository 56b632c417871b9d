"""Workloads for drain, removal and restore tests: manifests for Deployments (pods pinned to
named nodes through required node affinity), bare Pods (bound with spec.nodeName, no
controller), Pods with emptyDir volumes, PodDisruptionBudgets and DaemonSets.

Apply them with the real kubectl (`kubectl apply -f` of `to_yaml(...)`) or with
`apply(client, objs)`. The controller-manager stand-in turns Deployments into ReplicaSets
and Pods (ownerReferences set), the scheduler stand-in binds them, the kubelet stand-ins
report them Running. The images are never pulled.
"""

from __future__ import annotations

import time

import yaml

from .client import ApiError, Client

IMAGE = "registry.k8s.io/pause:3.10"


def _pod_spec(
    nodes: list[str] | None = None, emptydir: bool = False, tolerate_control_plane: bool = False
) -> dict:
    spec: dict = {
        "containers": [{"name": "main", "image": IMAGE}],
        "terminationGracePeriodSeconds": 5,
    }
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    if nodes:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": list(nodes),
                                }
                            ]
                        }
                    ]
                }
            }
        }
    if tolerate_control_plane:
        spec["tolerations"] = [
            {
                "key": "node-role.kubernetes.io/control-plane",
                "operator": "Exists",
                "effect": "NoSchedule",
            }
        ]
    return spec


def deployment(
    name: str,
    replicas: int = 2,
    nodes: list[str] | None = None,
    namespace: str = "default",
    emptydir: bool = False,
    tolerate_control_plane: bool = False,
) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(nodes, emptydir, tolerate_control_plane),
            },
        },
    }


def pod(
    name: str,
    node: str,
    namespace: str = "default",
    emptydir: bool = False,
    labels: dict | None = None,
) -> dict:
    """A bare Pod (no controller) bound to `node`; kubectl drain needs --force for it."""
    spec = _pod_spec(None, emptydir)
    spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": spec,
    }


def pdb(
    name: str,
    app: str,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    namespace: str = "default",
) -> dict:
    spec: dict = {"selector": {"matchLabels": {"app": app}}}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def daemonset(name: str, namespace: str = "default", node_selector: dict | None = None) -> dict:
    labels = {"app": name}
    spec = _pod_spec(tolerate_control_plane=True)
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def to_yaml(objs: list[dict]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


def apply(client: Client, objs: list[dict]) -> None:
    for o in objs:
        client.create_or_update(o)


def wait_running(
    client: Client, namespace: str, selector: str, count: int, timeout: float = 60
) -> list[dict]:
    """Pods matching `selector` that are Running and Ready, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    pods: list[dict] = []
    while time.monotonic() < deadline:
        try:
            pods = [
                p
                for p in client.list("Pod", namespace, label_selector=selector)
                if not p["metadata"].get("deletionTimestamp")
                and p.get("status", {}).get("phase") == "Running"
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions") or []
                )
            ]
        except (ApiError, OSError):
            pods = []
        if len(pods) >= count:
            return pods
        time.sleep(0.5)
    raise TimeoutError(
        f"{len(pods)}/{count} pods {selector!r} running in {namespace} after {timeout}s"
    )
