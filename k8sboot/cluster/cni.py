"""The CNI manifest applied through the API, and the wait for every Node to be Ready."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import PurePosixPath

from k8sboot.actions import Action, Fetched, OnHost
from k8sboot.cluster.kubeconfig import digest
from k8sboot.errors import MachineError
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import KUBECTL, Wanted, parse_nodes
from k8sboot.host_state import CONFIG_DIR, STAMPS_DIR
from k8sboot.render import CNI_MANIFEST, RenderedFile, cni_file
from k8sboot.spec import Cluster
from k8sboot.step import Context, Step, sha256
from k8sboot.transport import CommandFailed

CALICO_OPERATOR_FILE = PurePosixPath(CONFIG_DIR) / "tigera-operator.yaml"


CALICO_CRDS = ("installations.operator.tigera.io", "apiservers.operator.tigera.io")


def cni_stamp(file: RenderedFile, operator: Fetched | None) -> str:
    """What the CNI stamp records: the manifest applied, and the operator's release."""
    return sha256(file.content + (f"\n{operator.sha256}" if operator else ""))


class Cni(Step):
    title = "CNI"

    def wants(self, cluster: Cluster) -> Wanted:
        return Wanted(files=(str(CNI_MANIFEST),))

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


@dataclass(frozen=True)
class ApplyManifest(OnHost):
    file: RenderedFile
    what: str
    stamp: str  # recorded on the host once applied, so that a re-run can skip it
    # An operator's release manifest applied first (server-side: its CRDs are too large
    # for the annotation client-side apply keeps), and the CRDs to wait for.
    operator: Fetched | None = None
    crds: tuple[str, ...] = ()

    def describe(self) -> str:
        first = (
            f"kubectl apply --server-side {self.operator.url} (sha256 checked), "
            if self.operator
            else ""
        )
        return f"{first}kubectl apply {self.what} ({self.file.path})"


@dataclass(frozen=True)
class WaitNodesReady(Action):
    host: str  # the control plane to ask
    nodes: tuple[str, ...]
    timeout: float

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host,)  # it only reads, through this control plane

    def describe(self) -> str:
        return f"wait up to {self.timeout:.0f}s for nodes Ready: {', '.join(self.nodes)}"


APPLY_TIMEOUT = 900


APPLY_ATTEMPTS = 3


@handles(ApplyManifest)
def apply(executor: Executor, action: ApplyManifest) -> Outcome:
    connection = executor.transport[action.host]
    if action.operator:
        operator = action.operator
        executor.progress(action.host, f"fetch {operator.url}")
        data = fetch_checked(operator.url, operator.sha256)
        connection.write_file(str(operator.path), data, 0o644)
        executor.progress(action.host, f"kubectl apply --server-side -f {operator.path}")
        connection.run(
            f"{KUBECTL} apply --server-side --force-conflicts -f {operator.path}",
            timeout=APPLY_TIMEOUT,
        )
    if action.crds:
        crds = " ".join(f"crd/{name}" for name in action.crds)
        connection.run(
            f"{KUBECTL} wait --for condition=established --timeout=120s {crds}", timeout=180
        )
    path = str(action.file.path)
    connection.write_file(path, action.file.content.encode(), action.file.mode)
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        executor.progress(action.host, f"kubectl apply -f {path}")
        # apply is idempotent: a request lost while the endpoint moved is simply repeated.
        result = connection.run(f"{KUBECTL} apply -f {path}", timeout=300, check=False)
        if result.ok:
            break
        if attempt == APPLY_ATTEMPTS:
            raise CommandFailed(result, executor.ctx.log.path)
        time.sleep(3)
    stamp = cni_stamp(action.file, action.operator)
    connection.write_file(f"{STAMPS_DIR}/{action.stamp}", f"{stamp}\n".encode())
    return Outcome((action.host,))


def fetch_checked(url: str, sha256: str) -> bytes:
    """A release file from `url`, refused unless its sha256 is the pinned one."""
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:
            data = answer.read()
    except OSError as error:
        raise MachineError(f"cannot fetch {url}: {error}") from None
    if digest(data) != sha256:
        raise MachineError(f"{url}: sha256 is {digest(data)}, expected {sha256}: not applied")
    return data


@handles(WaitNodesReady)
def wait_ready(executor: Executor, action: WaitNodesReady) -> Outcome:
    connection = executor.transport[action.host]
    deadline = time.monotonic() + action.timeout
    said = None
    while True:
        result = connection.run(f"{KUBECTL} get nodes -o json", check=False, timeout=60, quiet=True)
        nodes = parse_nodes(json.loads(result.stdout)) if result.ok else {}
        waiting = {
            name: (nodes[name].reason if name in nodes else "not registered")
            for name in action.nodes
            if name not in nodes or not nodes[name].ready
        }
        # A poll every 2 s for up to the whole timeout: the log gets what changed.
        state = (
            "; ".join(f"{n}: {why}" for n, why in waiting.items())
            if result.ok
            else (f"kubectl get nodes: exit {result.exit_code}: {result.stderr.strip()[-200:]}")
        )
        if state != said:
            executor.ctx.log.write(action.host, f"nodes Ready? {state or 'all Ready'}")
            said = state
        if not waiting:
            return Outcome((), nodes=nodes)
        if time.monotonic() > deadline:
            detail = "; ".join(f"{name}: {why}" for name, why in waiting.items())
            raise MachineError(f"nodes not Ready after {action.timeout:.0f}s: {detail}")
        executor.progress(action.host, f"waiting for {', '.join(waiting)}")
        time.sleep(2)
