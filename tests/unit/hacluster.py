"""A cluster file with three control planes behind kube-vip and one worker."""

from __future__ import annotations

from k8sboot.spec import Cluster

from .conftest import load_data

CONTROL_PLANES = {"cp1": "10.0.0.11", "cp2": "10.0.0.12", "cp3": "10.0.0.13"}


def ha_cluster(base: dict, control_planes: int = 3) -> Cluster:
    base["hosts"] = [
        {"name": n, "address": ip, "roles": ["control-plane"]}
        for n, ip in list(CONTROL_PLANES.items())[:control_planes]
    ] + [{"name": "w1", "address": "10.0.0.21", "roles": ["worker"]}]
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    return load_data(base).cluster
