"""Pod and PodDisruptionBudget JSON as the API returns it, for the drain checks' tests."""

from __future__ import annotations

from typing import Any

WEB = {"matchLabels": {"app": "web"}}
MIRROR = "kubernetes.io/config.mirror"


def pod(
    name: str,
    node: str = "w1",
    owner: str | None = "ReplicaSet",
    labels: dict[str, str] | None = None,
    emptydir: bool = False,
    phase: str = "Running",
    ready: bool = True,
    **meta: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels or {}}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner, "name": "x", "controller": True}]
    metadata.update(meta)
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c"}]}
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    status: dict[str, Any] = {"phase": phase}
    if phase == "Running":
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": metadata, "spec": spec, "status": status}


def web(name: str, **kwargs: Any) -> dict[str, Any]:
    return pod(name, labels={"app": "web"}, **kwargs)


def pdb(
    name: str,
    selector: dict | None,
    allowed: int,
    healthy: int = 2,
    wanted: int = 2,
    generation: int = 1,
    observed: int = 1,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "generation": generation},
        "spec": {"selector": selector, **spec},
        "status": {
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": wanted,
            "observedGeneration": observed,
        },
    }
