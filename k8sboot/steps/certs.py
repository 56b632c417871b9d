"""Renew kubeadm's certificates on every control plane, one at a time, then fetch the
admin kubeconfig again (its client certificate was renewed too)."""

from __future__ import annotations

from k8sboot.actions import Action, FetchKubeconfig
from k8sboot.certs.actions import RenewCertificates
from k8sboot.errors import MachineError
from k8sboot.kubeadm_node import ADMIN_CONF
from k8sboot.steps.base import Context, Step


class RenewAll(Step):
    title = "renew certificates"

    def plan(self, ctx: Context) -> list[Action]:
        renewing, unreachable = [], []
        for host in ctx.cluster.control_planes:
            if host.name not in ctx.facts.hosts:
                unreachable.append(host.name)
            elif ctx.facts[host.name].exists(ADMIN_CONF):
                renewing.append(host.name)
        if not renewing:
            raise MachineError("no reachable, initialised control plane to renew certificates on")
        for name in unreachable:
            ctx.notes.append(
                f"warning: {name} could not be reached: its certificates were not renewed; "
                "run `k8sboot certs renew` again once it is back"
            )
        actions: list[Action] = [RenewCertificates(name) for name in renewing]
        return [*actions, FetchKubeconfig(renewing[0], ctx.cluster.endpoint)]
