"""containerd's configuration file and registry mirrors."""

from __future__ import annotations

from k8sboot.actions import Action, WriteFiles
from k8sboot.cluster.node_setup import scoped
from k8sboot.facts import Wanted
from k8sboot.render import CONTAINERD_CONFIG, CONTAINERD_HOSTS_DIR, containerd_files
from k8sboot.spec import Cluster
from k8sboot.step import Context, Step, changed


class ContainerdConfig(Step):
    title = "containerd configuration"
    hosts_apart = True

    def wants(self, cluster: Cluster) -> Wanted:
        mirrors = cluster.container_runtime.registry_mirrors
        hosts_files = (str(CONTAINERD_HOSTS_DIR / r / "hosts.toml") for r in mirrors)
        return Wanted(files=(str(CONTAINERD_CONFIG), *hosts_files))

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
