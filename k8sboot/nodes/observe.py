"""Read-only questions to the API for node maintenance, through kubectl on a control plane
with admin.conf: the pods on a node and the PodDisruptionBudgets."""

from __future__ import annotations

import json
import shlex
from typing import Any

from k8sboot.errors import MachineError
from k8sboot.facts import KUBECTL
from k8sboot.kubeadm_node import API_SERVER_PORT
from k8sboot.transport import Askable


def api_server(ip: str) -> str:
    """The URL of one control plane's own API server (its certificate names its IP)."""
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}:{API_SERVER_PORT}"


def kubectl(server: str | None = None) -> str:
    """kubectl with admin.conf; through the endpoint, or straight to `server`: maintenance
    asks the API server of the control plane it runs on, so that a VIP moving (or a load
    balancer that cannot send a backend's own traffic back to it) does not cut it off, and
    removing the control plane holding the VIP cannot either."""
    return KUBECTL + (f" --server {shlex.quote(server)}" if server else "")


def _items(connection: Askable, args: str, server: str | None) -> list[dict[str, Any]]:
    result = connection.ask(
        f"{kubectl(server)} {args} -o json", timeout=120, shown=f"kubectl {args}"
    )
    try:
        return json.loads(result.stdout).get("items", [])
    except ValueError:
        raise MachineError(f"{connection.name}: `kubectl {args}` answered no JSON") from None


def pods_on(connection: Askable, node: str, server: str | None = None) -> list[dict[str, Any]]:
    selector = shlex.quote(f"spec.nodeName={node}")
    return _items(connection, f"get pods --all-namespaces --field-selector {selector}", server)


def pods_by_node(connection: Askable, server: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Node name -> the pods bound to it (pods_on for every node, in one question)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for pod in _items(connection, "get pods --all-namespaces", server):
        node = pod.get("spec", {}).get("nodeName")
        if node:
            found.setdefault(node, []).append(pod)
    return found


def budgets(connection: Askable, server: str | None = None) -> list[dict[str, Any]]:
    return _items(connection, "get poddisruptionbudgets --all-namespaces", server)
