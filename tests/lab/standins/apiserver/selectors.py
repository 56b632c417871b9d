"""Label and field selectors (the string forms kubectl and client-go send)."""

from __future__ import annotations

import re

from . import errors

_SET_RE = re.compile(r"^\s*([^\s!=<>(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def label_matcher(selector: str | None):
    if not selector:
        return lambda labels: True
    tests = []
    for term in _split(selector):
        m = _SET_RE.match(term)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                tests.append(lambda lb, k=key, v=vals: lb.get(k) in v)
            else:
                tests.append(lambda lb, k=key, v=vals: lb.get(k) not in v)
        elif "!=" in term:
            k, v = (s.strip() for s in term.split("!=", 1))
            tests.append(lambda lb, k=k, v=v: lb.get(k) != v)
        elif "==" in term or "=" in term:
            k, v = (s.strip() for s in re.split("==?", term, maxsplit=1))
            tests.append(lambda lb, k=k, v=v: lb.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            tests.append(lambda lb, k=absent: k not in lb)
        elif re.match(r"^[A-Za-z0-9./_-]+$", term):
            tests.append(lambda lb, k=term: k in lb)
        else:
            raise errors.bad_request(f"unable to parse requirement: {term}")
    return lambda labels: all(t(labels or {}) for t in tests)


def match_label_selector(selector: dict | None, labels: dict | None) -> bool:
    """A metav1.LabelSelector (matchLabels/matchExpressions); empty selects everything."""
    labels = labels or {}
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def _field(obj: dict, path: str):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


# Field selectors upstream supports beyond metadata.name/namespace, per kind.
FIELD_LABELS = {
    "Pod": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "Node": {"spec.unschedulable"},
    "Secret": {"type"},
    "Event": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "CertificateSigningRequest": {"spec.signerName"},
    "Namespace": {"status.phase"},
}


def field_matcher(selector: str | None, kind: str):
    if not selector:
        return lambda obj: True
    tests = []
    allowed = {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(kind, set())
    for term in _split(selector):
        neg = "!=" in term
        k, v = (s.strip() for s in re.split("!=|==?", term, maxsplit=1))
        if k not in allowed:
            raise errors.bad_request(f"field label not supported: {k}")

        def test(obj, k=k, v=v, neg=neg):
            val = _field(obj, k)
            if isinstance(val, bool):
                val = "true" if val else "false"
            val = "" if val is None else str(val)
            return (val != v) if neg else (val == v)

        tests.append(test)
    return lambda obj: all(t(obj) for t in tests)
