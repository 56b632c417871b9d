"""Check rendered config documents against the upstream field lists in apifields/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FIELDS_DIR = Path(__file__).parent / "apifields"


@cache
def schema(api_version: str, minor: int) -> dict[str, Any]:
    group, version = api_version.split("/")
    return json.loads((FIELDS_DIR / f"{group}_{version}_1.{minor}.json").read_text())


def unknown_keys(document: dict[str, Any], minor: int) -> list[str]:
    """Paths of keys in `document` that its apiVersion/kind does not have upstream."""
    kinds = schema(document["apiVersion"], minor)
    if document["kind"] not in kinds:
        return [f"kind {document['kind']}"]
    return _walk(document, kinds[document["kind"]], document["kind"])


def _walk(value: Any, node: dict[str, Any], path: str) -> list[str]:
    if "fields" in node:
        if not isinstance(value, dict):
            return [f"{path} (expected a mapping)"]
        found = []
        for key, child in value.items():
            if key not in node["fields"]:
                found.append(f"{path}.{key}")
            else:
                found += _walk(child, node["fields"][key], f"{path}.{key}")
        return found
    if "items" in node:
        if not isinstance(value, list):
            return [f"{path} (expected a list)"]
        return [
            p for i, item in enumerate(value) for p in _walk(item, node["items"], f"{path}[{i}]")
        ]
    if "values" in node:
        if not isinstance(value, dict):
            return [f"{path} (expected a mapping)"]
        return [p for k, v in value.items() for p in _walk(v, node["values"], f"{path}.{k}")]
    kind = node["type"]
    expected = {
        "string": str,
        "duration": str,
        "quantity": (str, int),
        "integer": int,
        "boolean": bool,
        "number": (int, float),
        "list": list,
        "map": dict,
    }.get(kind)
    if expected and not isinstance(value, expected):
        return [f"{path} (expected {kind}, found {type(value).__name__})"]
    return []
