"""The flat list of steps behind each command."""

from __future__ import annotations

from k8sboot.pipeline import Workflow
from k8sboot.steps.cluster import Cni, Kubeconfig, WaitReady
from k8sboot.steps.files import ContainerdConfig, KubeVip, KubeVipForInit
from k8sboot.steps.kubeadm import InitControlPlane, JoinControlPlanes, JoinWorkers
from k8sboot.steps.node_setup import NodeSetup
from k8sboot.steps.reset import ResetNodes


def up() -> Workflow:
    return Workflow(
        "up",
        [
            NodeSetup(),
            ContainerdConfig(),
            KubeVipForInit(),
            InitControlPlane(),
            JoinControlPlanes(),
            JoinWorkers(),
            KubeVip(),
            Cni(),
            WaitReady(),
            Kubeconfig(),
        ],
    )


def reset(purge_packages: bool) -> Workflow:
    return Workflow("reset", [ResetNodes(purge_packages)], preflight=False)
