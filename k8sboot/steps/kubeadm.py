"""Ordered cluster operations: kubeadm init on the first control plane, then joins."""

from __future__ import annotations

from k8sboot.actions import Action, KubeadmInit, KubeadmJoin
from k8sboot.spec import Host
from k8sboot.steps.base import Context, Step


class InitControlPlane(Step):
    title = "kubeadm init"

    def plan(self, ctx: Context) -> list[Action]:
        if ctx.initialised:
            return []
        host = ctx.cluster.first_control_plane
        found = ctx.host_facts(host)
        # kubelet.conf or kubeadm's manifests without admin.conf: an init that stopped.
        leftovers = found.kubeadm_configured or "kube-apiserver.yaml" in found.data["manifests"]
        return [KubeadmInit(host.name, reset_first=leftovers)]


def _to_join(ctx: Context, hosts: list[Host]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Hosts still to join, and those among them that an earlier join left half-done."""
    init_host = None if ctx.initialised else ctx.cluster.first_control_plane.name
    joining, reset = [], []
    for host in hosts:
        if host.name == init_host or (ctx.initialised and ctx.joined(host)):
            continue
        joining.append(host.name)
        if ctx.host_facts(host).kubeadm_configured:
            reset.append(host.name)
    return tuple(joining), tuple(reset)


class JoinControlPlanes(Step):
    title = "join control planes"

    def plan(self, ctx: Context) -> list[Action]:
        joining, reset = _to_join(ctx, ctx.cluster.control_planes)
        return [KubeadmJoin(joining, control_plane=True, reset_first=reset)] if joining else []


class JoinWorkers(Step):
    title = "join workers"

    def plan(self, ctx: Context) -> list[Action]:
        workers = [h for h in ctx.cluster.with_role("worker") if not h.has("control-plane")]
        joining, reset = _to_join(ctx, workers)
        return [KubeadmJoin(joining, control_plane=False, reset_first=reset)] if joining else []
