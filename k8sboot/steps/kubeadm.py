"""Ordered cluster operations: kubeadm init on the first control plane, then joins."""

from __future__ import annotations

from k8sboot.actions import Action, KubeadmInit, KubeadmJoin
from k8sboot.errors import MachineError
from k8sboot.spec import Host
from k8sboot.steps.base import Context, Step
from k8sboot.steps.files import kube_vip_manifest


class InitControlPlane(Step):
    title = "kubeadm init"

    def plan(self, ctx: Context) -> list[Action]:
        if ctx.initialised:
            return []
        host = ctx.cluster.first_control_plane
        found = ctx.host_facts(host)
        vip = None
        if ctx.cluster.control_plane_endpoint.type == "kube-vip":
            vip = kube_vip_manifest(ctx, host, during_init=True)
        if found.initialised_control_plane:
            # Its API answered (the pipeline asked it) without what init uploads last, or
            # refused admin.conf, whose RBAC binding init makes once the API answers.
            others = [h for h in ctx.cluster.hosts if h is not host and h.name in ctx.facts.hosts]
            joined = [h.name for h in others if ctx.host_facts(h).kubeadm_configured]
            if joined:  # joins come after init: this is no half-done init
                raise MachineError(
                    f"{host.name}: the API lacks kube-public/cluster-info or refuses admin.conf, "
                    f"yet {', '.join(joined)} joined already: repair that by hand (k8sboot "
                    "would only redo kubeadm init when nothing has joined)"
                )
            return [KubeadmInit(host.name, resume=True, kube_vip=vip)]
        # kubelet.conf or kubeadm's manifests: an init that stopped before it finished.
        leftovers = found.kubeadm_configured or "kube-apiserver.yaml" in found.data["manifests"]
        return [KubeadmInit(host.name, reset_first=leftovers, kube_vip=vip)]


def _to_join(
    ctx: Context, hosts: list[Host], title: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Hosts still to join, and those among them that an earlier join left half-done."""
    if ctx.initialised and not ctx.api.answers:
        # Whether a configured host's Node is registered is unknown: it is left as it is
        # (a join redone over a working node would reset it). A new host needs the API.
        configured = [h.name for h in hosts if ctx.host_facts(h).kubeadm_configured]
        new = [h.name for h in hosts if h.name not in configured]
        if new:
            raise ctx.api.needed(f"{title}: joining {', '.join(new)}")
        if configured:
            ctx.notes.append(
                f"{title}: {', '.join(configured)} left as is (kubeadm configured them; "
                "whether their Nodes are registered is unknown while the API does not answer)"
            )
        return (), ()
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
        joining, reset = _to_join(ctx, ctx.cluster.control_planes, self.title)
        return [KubeadmJoin(joining, control_plane=True, reset_first=reset)] if joining else []


class JoinWorkers(Step):
    title = "join workers"

    def plan(self, ctx: Context) -> list[Action]:
        workers = [h for h in ctx.cluster.with_role("worker") if not h.has("control-plane")]
        joining, reset = _to_join(ctx, workers, self.title)
        return [KubeadmJoin(joining, control_plane=False, reset_first=reset)] if joining else []
