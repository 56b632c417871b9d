"""kube-vip's static pod: the control-plane virtual IP."""

from __future__ import annotations

import shlex
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
        endpoint = ctx.cluster.control_plane_endpoint
        if endpoint.type != "kube-vip":
            return []
        actions: list[Action] = []
        holder: RewriteHoldersKubeVip | None = None
        for host in ctx.cluster.control_planes:
            stale = changed(ctx, host, [kube_vip_manifest(ctx, host, during_init=False)])
            if not stale:
                continue
            found = ctx.facts.hosts.get(host.name)
            if found is not None and found.interface_of(str(endpoint.address)) is not None:
                holder = RewriteHoldersKubeVip(host.name, stale, str(endpoint.address))
            else:
                actions.append(WriteFiles(host.name, stale))
        if holder is not None:
            actions.append(holder)
        if actions and not ctx.api.answers:
            ctx.notes.append(
                "kube-vip: not checked that the API answers through the virtual IP once it "
                "is rewritten (the API does not answer now)"
            )
        elif actions:  # a rewritten kube-vip restarts: the virtual IP is dark for a moment
            actions.append(WaitApiServer(ctx.api_host.name, ctx.cluster.endpoint))
        return actions


@dataclass(frozen=True)
class RewriteHoldersKubeVip(OnHost):
    """The kube-vip of the control plane holding the virtual IP, rewritten last and only
    once the address has left it. Rewritten in place, the pod restarts whenever its kubelet
    notices, and the requests in flight to it then hang: the address is gone before they
    are answered. Stopped first, the address moves once, and the wait after it (after every
    kube-vip step) sees where it went."""

    files: tuple[RenderedFile, ...]
    address: str

    def describe(self) -> str:
        return f"move the virtual IP {self.address} off it, then write {KUBE_VIP_MANIFEST}"


@handles(RewriteHoldersKubeVip)
def rewrite_holders_kube_vip(executor: Executor, action: RewriteHoldersKubeVip) -> Outcome:
    stop_holding(executor, action.host, action.address)
    executor.execute(WriteFiles(action.host, action.files))
    return Outcome((action.host,))


def stop_holding(executor: Executor, host: str, address: str, timeout: float = 120) -> None:
    """kube-vip stopped on `host`, until the virtual IP has left it (kube-vip lets go of
    its lease and the address on the way out; another control plane's kube-vip takes both)."""
    connection = executor.transport[host]
    executor.progress(host, f"move the virtual IP {address} off it (stop kube-vip here)")
    connection.run(f"rm -f {KUBE_VIP_MANIFEST}", timeout=60)
    deadline = time.monotonic() + timeout
    while connection.run(f"ip -o addr show to {shlex.quote(address)}", timeout=30).stdout.strip():
        if time.monotonic() > deadline:
            raise MachineError(
                f"{host}: the virtual IP {address} stayed here after kube-vip stopped"
            )
        time.sleep(1)


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
