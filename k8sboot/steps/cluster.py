"""Steps on the running cluster: the CNI, waiting for Ready nodes, the kubeconfig."""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

from k8sboot.actions import Action, ApplyManifest, Fetched, FetchKubeconfig, WaitNodesReady
from k8sboot.host_state import CONFIG_DIR
from k8sboot.kubeadm_node import ADMIN_CONF
from k8sboot.render import RenderedFile, cni_file
from k8sboot.steps.base import Context, Step
from k8sboot.steps.files import sha256

CALICO_OPERATOR_FILE = PurePosixPath(CONFIG_DIR) / "tigera-operator.yaml"
CALICO_CRDS = ("installations.operator.tigera.io", "apiservers.operator.tigera.io")


def cni_stamp(file: RenderedFile, operator: Fetched | None) -> str:
    """What the CNI stamp records: the manifest applied, and the operator's release."""
    return sha256(file.content + (f"\n{operator.sha256}" if operator else ""))


class Cni(Step):
    title = "CNI"

    def plan(self, ctx: Context) -> list[Action]:
        cni = ctx.cluster.networking.cni
        if cni == "none":
            return []
        file = cni_file(ctx.cluster)
        operator, crds = None, ()
        if cni == "calico":
            release = ctx.cluster.networking.calico_operator
            operator = Fetched(release.url, release.sha256, CALICO_OPERATOR_FILE)
            crds = CALICO_CRDS
        host = ctx.api_host
        if ctx.host_facts(host).stamp("cni") == cni_stamp(file, operator):
            return []
        if not ctx.api.answers:
            raise ctx.api.needed(f"applying the CNI ({cni})")
        return [ApplyManifest(host.name, file, cni, "cni", operator, crds)]


class WaitReady(Step):
    title = "nodes Ready"

    def plan(self, ctx: Context) -> list[Action]:
        if not ctx.api.answers:
            raise ctx.api.needed("checking that the nodes are Ready")
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
