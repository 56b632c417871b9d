"""The running cluster: applying manifests, waiting for Ready nodes, the kubeconfig."""

from __future__ import annotations

import json
import time
import urllib.request

import yaml

from k8sboot.actions import ApplyManifest, FetchKubeconfig, WaitApiServer, WaitNodesReady
from k8sboot.errors import MachineError
from k8sboot.executor.core import Executor, Outcome, handles, read_required
from k8sboot.facts import KUBECTL, parse_nodes
from k8sboot.host_state import STAMPS_DIR
from k8sboot.kubeadm_node import ADMIN_CONF
from k8sboot.state import write_private
from k8sboot.steps.cluster import cni_stamp, digest
from k8sboot.transport import CommandFailed

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
        executor.ctx.nodes = nodes
        if not waiting:
            return Outcome(())
        if time.monotonic() > deadline:
            detail = "; ".join(f"{name}: {why}" for name, why in waiting.items())
            raise MachineError(f"nodes not Ready after {action.timeout:.0f}s: {detail}")
        executor.progress(action.host, f"waiting for {', '.join(waiting)}")
        time.sleep(2)


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
