"""Rendered files written by k8sboot itself: containerd's configuration and kube-vip."""

from __future__ import annotations

import hashlib

from k8sboot.actions import Action, WaitApiServer, WriteFiles
from k8sboot.render import RenderedFile, containerd_files, kube_vip_file
from k8sboot.spec import Host
from k8sboot.steps.base import Context, Step
from k8sboot.steps.node_setup import scoped


def sha256(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def changed(ctx: Context, host: Host, files: list[RenderedFile]) -> tuple[RenderedFile, ...]:
    found = ctx.host_facts(host)
    return tuple(f for f in files if found.file_hash(str(f.path)) != sha256(f.content))


class ContainerdConfig(Step):
    title = "containerd configuration"
    hosts_apart = True

    def __init__(self, only: str | None = None):
        self.only = only

    def plan(self, ctx: Context) -> list[Action]:
        wanted = containerd_files(ctx.cluster)
        actions: list[Action] = []
        for host in scoped(ctx.cluster.kube_nodes, self.only):
            stale = changed(ctx, host, wanted)
            # A run stopped between writing the file and restarting leaves containerd on
            # the old configuration: restart it even though the file is right.
            unread = any(
                ctx.host_facts(host).started_before("containerd", str(f.path)) for f in wanted
            )
            if stale or unread:
                actions.append(WriteFiles(host.name, stale, restart="containerd"))
        return actions


def kube_vip_manifest(ctx: Context, host: Host, during_init: bool) -> RenderedFile:
    interface = host.interface or ctx.host_facts(host).interface_of(host.ip) or "eth0"
    return kube_vip_file(ctx.cluster, interface, during_init)


class KubeVip(Step):
    """kube-vip on every control plane, with admin.conf once the cluster exists."""

    title = "kube-vip"

    def plan(self, ctx: Context) -> list[Action]:
        if ctx.cluster.control_plane_endpoint.type != "kube-vip":
            return []
        actions: list[Action] = []
        for host in ctx.cluster.control_planes:
            stale = changed(ctx, host, [kube_vip_manifest(ctx, host, during_init=False)])
            if stale:
                actions.append(WriteFiles(host.name, stale))
        if actions and not ctx.api.answers:
            ctx.notes.append(
                "kube-vip: not checked that the API answers through the virtual IP once it "
                "is rewritten (the API does not answer now)"
            )
        elif actions:  # a rewritten kube-vip restarts: the virtual IP is dark for a moment
            actions.append(WaitApiServer(ctx.api_host.name, ctx.cluster.endpoint))
        return actions
