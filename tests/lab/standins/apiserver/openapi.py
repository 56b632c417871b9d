"""A minimal OpenAPI v3 surface: per group-version documents whose PATCH operations carry
the GVK extension and the fieldValidation parameter, which is what kubectl reads to decide
that the server validates fields itself (so `kubectl apply/create -f` need no client-side
schema). No type schemas are served (see tests/lab/README.md). OpenAPI v2 is a document
without definitions."""

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


def gv_document(gv_path: str, version: str, resources=RESOURCES) -> dict | None:
    """`resources`: the built-in ones and the custom ones served (for kubectl, a CRD's
    group-version has a document too, as upstream's openapiv3 controller publishes)."""
    paths = {}
    for r in resources:
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


def root(version: str, resources=RESOURCES) -> dict:
    out = {}
    for gvp in sorted({_gv_path(r) for r in resources}):
        doc = gv_document(gvp, version, resources)
        if doc:
            h = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
            out[gvp] = {"serverRelativeURL": f"/openapi/v3/{gvp}?hash={h}"}
    return {"paths": out}


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def v2_document(version: str) -> dict:
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": {},
        "definitions": {},
    }


def _pb_string(field: int, value: str) -> bytes:
    data = value.encode()
    return bytes([field << 3 | 2, len(data)]) + data


def v2_protobuf(version: str) -> bytes:
    """The same as gnostic's openapi_v2.Document: swagger (1) and info (2: title 1,
    version 2), what client-go's OpenAPISchema() asks for."""
    info = _pb_string(1, "Kubernetes") + _pb_string(2, version)
    return _pb_string(1, "2.0") + bytes([2 << 3 | 2, len(info)]) + info
