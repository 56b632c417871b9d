"""Node selector terms (matchExpressions on labels, matchFields on metadata.name)."""

from __future__ import annotations


def _op(op: str, have: str | None, values: list[str]) -> bool:
    if op == "In":
        return have in values
    if op == "NotIn":
        return have not in values
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and values:
        try:
            return int(have) > int(values[0]) if op == "Gt" else int(have) < int(values[0])
        except ValueError:
            return False
    return False


def match_expressions(term: dict, node: dict) -> bool:
    labels = node["metadata"].get("labels") or {}
    for e in term.get("matchExpressions") or []:
        if not _op(e["operator"], labels.get(e["key"]), e.get("values") or []):
            return False
    for f in term.get("matchFields") or []:
        have = node["metadata"]["name"] if f["key"] == "metadata.name" else None
        if not _op(f["operator"], have, f.get("values") or []):
            return False
    return True
