"""A minimal OpenAPI v3 surface: per group-version documents whose PATCH operations carry
the GVK extension and the fieldValidation parameter, which is what kubectl reads to decide
that the server validates fields itself (so `kubectl apply/create -f` need no client-side
schema). No type schemas are served (see tests/lab/README.md)."""

from __future__ import annotations

import hashlib
import json

from .resources import RESOURCES

PARAMS = [
    {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for n in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
]


def _gv_path(r) -> str:
    return "api/v1" if not r.group else f"apis/{r.group}/{r.version}"


def gv_document(gv_path: str, version: str) -> dict | None:
    paths = {}
    for r in RESOURCES:
        if _gv_path(r) != gv_path or "patch" not in r.verbs:
            continue
        base = "/" + gv_path + ("/namespaces/{namespace}" if r.namespaced else "")
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        op = {
            "operationId": f"patch{r.kind}",
            "parameters": PARAMS,
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
        }
        paths[f"{base}/{r.plural}/{{name}}"] = {"patch": op}
    if not paths:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": paths,
        "components": {"schemas": {}},
    }


def root(version: str) -> dict:
    out = {}
    for gvp in sorted({_gv_path(r) for r in RESOURCES}):
        doc = gv_document(gvp, version)
        if doc:
            h = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
            out[gvp] = {"serverRelativeURL": f"/openapi/v3/{gvp}?hash={h}"}
    return {"paths": out}
