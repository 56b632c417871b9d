"""kube-vip's static pod: the control-plane virtual IP."""

from __future__ import annotations

import time
from dataclasses import dataclass

from k8sboot.actions import Action, OnHost, WriteFiles
from k8sboot.errors import MachineError
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import KUBECTL, Wanted
from k8sboot.render import KUBE_VIP_MANIFEST, RenderedFile, kube_vip_file
from k8sboot.spec import Cluster, Host
from k8sboot.step import Context, Step, changed


def kube_vip_manifest(ctx: Context, host: Host, during_init: bool) -> RenderedFile:
    interface = host.interface or ctx.host_facts(host).interface_of(host.ip) or "eth0"
    return kube_vip_file(ctx.cluster, interface, during_init)


class KubeVip(Step):
    """kube-vip on every control plane, with admin.conf once the cluster exists."""

    title = "kube-vip"

    def wants(self, cluster: Cluster) -> Wanted:
        return Wanted(files=(str(KUBE_VIP_MANIFEST),))

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


@dataclass(frozen=True)
class WaitApiServer(OnHost):
    """Wait until the API servers answer through the cluster's endpoint (after kube-vip
    restarted, the virtual IP is dark for a moment)."""

    host: str  # the control plane to ask from
    endpoint: str
    timeout: float = 120

    def describe(self) -> str:
        return f"wait up to {self.timeout:.0f}s for https://{self.endpoint}/readyz"


@handles(WaitApiServer)
def wait_api_server(executor: Executor, action: WaitApiServer) -> Outcome:
    connection = executor.transport[action.host]
    deadline = time.monotonic() + action.timeout
    # admin.conf names the endpoint as its server: this goes through the virtual IP.
    command = f"{KUBECTL} get --raw /readyz --request-timeout=5s"
    said = None
    while True:
        result = connection.run(command, check=False, timeout=30, quiet=True)
        state = "ready" if result.ok else f"exit {result.exit_code}: {result.stderr.strip()[-200:]}"
        if state != said:
            executor.ctx.log.write(action.host, f"https://{action.endpoint}/readyz: {state}")
            said = state
        if result.ok:
            return Outcome(())
        if time.monotonic() > deadline:
            raise MachineError(
                f"the API servers do not answer through https://{action.endpoint} after "
                f"{action.timeout:.0f}s: {result.stderr.strip()[-200:]}"
            )
        executor.progress(action.host, f"waiting for https://{action.endpoint}/readyz")
        time.sleep(1)
