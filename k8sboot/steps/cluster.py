"""Steps on the running cluster: the CNI, waiting for Ready nodes, the kubeconfig."""

from __future__ import annotations

import hashlib

from k8sboot.actions import Action, ApplyManifest, FetchKubeconfig, WaitNodesReady
from k8sboot.facts import ADMIN_CONF
from k8sboot.render import cni_file
from k8sboot.steps.base import Context, Step
from k8sboot.steps.files import sha256

CALICO_OPERATOR = (
    "https://raw.githubusercontent.com/projectcalico/calico/v3.29.3/manifests/tigera-operator.yaml"
)


class Cni(Step):
    title = "CNI"

    def plan(self, ctx: Context) -> list[Action]:
        cni = ctx.cluster.networking.cni
        if cni == "none":
            return []
        file = cni_file(ctx.cluster)
        host = ctx.api_host
        found = ctx.host_facts(host)
        if found.stamp("cni") == sha256(file.content):
            return []
        prerequisites: tuple[str, ...] = ()
        if cni == "calico":
            prerequisites = (
                f"kubectl apply --server-side -f {CALICO_OPERATOR}",
                "kubectl wait --for condition=established --timeout=120s "
                "crd/installations.operator.tigera.io",
            )
        return [ApplyManifest(host.name, file, cni, "cni", prerequisites)]


class WaitReady(Step):
    title = "nodes Ready"

    def plan(self, ctx: Context) -> list[Action]:
        names = [h.name for h in ctx.cluster.kube_nodes]
        pending = [n for n in names if n not in ctx.nodes or not ctx.nodes[n].ready]
        if not pending:
            return []
        return [WaitNodesReady(ctx.api_host.name, tuple(names), ctx.wait_timeout)]


class Kubeconfig(Step):
    title = "kubeconfig"

    def plan(self, ctx: Context) -> list[Action]:
        host = ctx.api_host
        remote = ctx.host_facts(host).file_hash(ADMIN_CONF)
        source = ctx.state.kubeconfig.with_name("kubeconfig.source")
        recorded = source.read_text().strip() if source.exists() else None
        if remote is not None and ctx.state.kubeconfig.exists() and recorded == remote:
            return []
        return [FetchKubeconfig(host.name, ctx.cluster.endpoint)]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
