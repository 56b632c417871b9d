"""The admin kubeconfig, fetched into the state directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import yaml

from k8sboot.actions import Action, OnHost
from k8sboot.executor import Executor, Outcome, handles, read_required
from k8sboot.facts import Wanted
from k8sboot.kubeadm_node import ADMIN_CONF
from k8sboot.spec import Cluster
from k8sboot.state import write_private
from k8sboot.step import Context, Step


class Kubeconfig(Step):
    title = "kubeconfig"

    def wants(self, cluster: Cluster) -> Wanted:
        return Wanted(files=(ADMIN_CONF,))

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


@dataclass(frozen=True)
class FetchKubeconfig(OnHost):
    server: str

    def describe(self) -> str:
        return f"fetch admin kubeconfig (server https://{self.server}) into the state directory"


@handles(FetchKubeconfig)
def fetch_kubeconfig(executor: Executor, action: FetchKubeconfig) -> Outcome:
    ctx = executor.ctx
    raw = read_required(executor.transport[action.host], ADMIN_CONF, secret=True)  # a client key
    config = yaml.safe_load(raw)
    for cluster in config.get("clusters", []):
        cluster["cluster"]["server"] = f"https://{action.server}"
    path = ctx.state.kubeconfig
    write_private(path, yaml.safe_dump(config).encode())
    path.with_name("kubeconfig.source").write_text(digest(raw) + "\n")
    return Outcome((), f"kubeconfig written to {path}")
