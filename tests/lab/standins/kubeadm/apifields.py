"""Upstream field lists (tests/unit/apifields/*.json, copied into the package at build time)
and a strict walk over a config document, as kubeadm's strict decoding does."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
CANDIDATES = [HERE.parent / "apifields", HERE.parents[2] / "unit" / "apifields"]


def _dir() -> Path:
    for d in CANDIDATES:
        if d.is_dir():
            return d
    raise FileNotFoundError(
        "apifields data not found (looked in " + ", ".join(str(c) for c in CANDIDATES) + ")"
    )


@cache
def schema(api_version: str, minor: int) -> dict | None:
    group, version = api_version.split("/")
    path = _dir() / f"{group}_{version}_1.{minor}.json"
    if not path.exists():
        # v1beta3 stayed frozen after 1.30; later kubeadms still read it.
        older = sorted(_dir().glob(f"{group}_{version}_1.*.json"))
        if not older:
            return None
        path = older[-1]
    return json.loads(path.read_text())


def unknown_fields(doc: dict, node: dict, path: str = "") -> list[str]:
    """JSON paths of keys the upstream type does not have (`nodeRegistration.foo`)."""
    found: list[str] = []
    if "fields" in node:
        if not isinstance(doc, dict):
            return found
        for k, v in doc.items():
            p = f"{path}.{k}" if path else k
            if k not in node["fields"]:
                found.append(p)
            else:
                found += unknown_fields(v, node["fields"][k], p)
    elif "items" in node and isinstance(doc, list):
        for i, item in enumerate(doc):
            found += unknown_fields(item, node["items"], f"{path}[{i}]")
    elif "values" in node and isinstance(doc, dict):
        for k, v in doc.items():
            found += unknown_fields(v, node["values"], f"{path}.{k}")
    return found
