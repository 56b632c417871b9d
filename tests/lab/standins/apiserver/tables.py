"""Server-side printing: meta.k8s.io/v1 Table for `kubectl get`."""

from __future__ import annotations

import datetime as dt
import re

from .resources import Resource


def parse_time(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def age(ts: str | None) -> str:
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    s = max(0, int((dt.datetime.now(dt.UTC) - t).total_seconds()))
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 730:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d"


def _col(name: str, typ: str = "string", fmt: str = "", priority: int = 0, desc: str = "") -> dict:
    return {
        "name": name,
        "type": typ,
        "format": fmt,
        "description": desc or name,
        "priority": priority,
    }


NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE = _col(
    "Age",
    desc="CreationTimestamp is a timestamp representing the server time when "
    "this object was created.",
)


def _node_status(node: dict) -> str:
    conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or []}
    ready = conds.get("Ready")
    s = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
    if node.get("spec", {}).get("unschedulable"):
        s += ",SchedulingDisabled"
    return s


def _node_roles(node: dict) -> str:
    roles = sorted(
        k.split("/", 1)[1]
        for k in (node["metadata"].get("labels") or {})
        if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]
    )
    return ",".join(roles) or "<none>"


def _node_ip(node: dict, typ: str) -> str:
    for a in node.get("status", {}).get("addresses") or []:
        if a.get("type") == typ:
            return a["address"]
    return "<none>"


def pod_status_reason(pod: dict) -> str:
    st = pod.get("status", {})
    reason = st.get("reason") or st.get("phase") or "Unknown"
    init_statuses = st.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        state = cs.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode", 0) == 0:
            continue
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len(pod.get('spec', {}).get('initContainers') or [])}"
        break
    else:
        for cs in st.get("containerStatuses") or []:
            state = cs.get("state") or {}
            if "waiting" in state and state["waiting"].get("reason"):
                reason = state["waiting"]["reason"]
            elif "terminated" in state:
                reason = state["terminated"].get("reason") or "Completed"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_row(pod: dict) -> list:
    st = pod.get("status", {})
    containers = pod.get("spec", {}).get("containers") or []
    statuses = st.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    gates = pod.get("spec", {}).get("readinessGates") or []
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(containers)}",
        pod_status_reason(pod),
        str(restarts),
        age(pod["metadata"].get("creationTimestamp")),
        st.get("podIP") or "<none>",
        pod.get("spec", {}).get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        f"{len(gates)}/{len(gates)}" if gates else "<none>",
    ]


def _sel(obj: dict) -> str:
    sel = obj.get("spec", {}).get("selector") or {}
    ml = sel.get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in ml.items()) or "<none>"


def _containers(obj: dict) -> tuple[str, str]:
    cs = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _pdb_row(pdb: dict) -> list:
    spec, st = pdb.get("spec", {}), pdb.get("status", {})
    return [
        pdb["metadata"]["name"],
        str(spec.get("minAvailable", "N/A")),
        str(spec.get("maxUnavailable", "N/A")),
        st.get("disruptionsAllowed", 0),
        age(pdb["metadata"].get("creationTimestamp")),
    ]


def _csr_condition(csr: dict) -> str:
    conds = [c["type"] for c in csr.get("status", {}).get("conditions") or []]
    s = ",".join(conds) or "Pending"
    if csr.get("status", {}).get("certificate") and "Approved" in conds:
        s += ",Issued"
    return s


COLUMNS = {
    "Node": (
        [
            NAME,
            _col("Status"),
            _col("Roles"),
            AGE,
            _col("Version"),
            _col("Internal-IP", priority=1),
            _col("External-IP", priority=1),
            _col("OS-Image", priority=1),
            _col("Kernel-Version", priority=1),
            _col("Container-Runtime", priority=1),
        ],
        lambda n: [
            n["metadata"]["name"],
            _node_status(n),
            _node_roles(n),
            age(n["metadata"].get("creationTimestamp")),
            n.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
            _node_ip(n, "InternalIP"),
            _node_ip(n, "ExternalIP"),
            n.get("status", {}).get("nodeInfo", {}).get("osImage", "<unknown>"),
            n.get("status", {}).get("nodeInfo", {}).get("kernelVersion", "<unknown>"),
            n.get("status", {}).get("nodeInfo", {}).get("containerRuntimeVersion", "<unknown>"),
        ],
    ),
    "Pod": (
        [
            NAME,
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            AGE,
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    "Namespace": (
        [NAME, _col("Status"), AGE],
        lambda o: [
            o["metadata"]["name"],
            o.get("status", {}).get("phase", "Active"),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "ConfigMap": (
        [NAME, _col("Data", "integer"), AGE],
        lambda o: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "Secret": (
        [NAME, _col("Type"), _col("Data", "integer"), AGE],
        lambda o: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            len(o.get("data") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "Deployment": (
        [
            NAME,
            _col("Ready"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            AGE,
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        lambda o: [
            o["metadata"]["name"],
            f"{o.get('status', {}).get('readyReplicas', 0)}/{o.get('spec', {}).get('replicas', 1)}",
            o.get("status", {}).get("updatedReplicas", 0),
            o.get("status", {}).get("availableReplicas", 0),
            age(o["metadata"].get("creationTimestamp")),
            *_containers(o),
            _sel(o),
        ],
    ),
    "ReplicaSet": (
        [
            NAME,
            _col("Desired", "integer"),
            _col("Current", "integer"),
            _col("Ready", "integer"),
            AGE,
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        lambda o: [
            o["metadata"]["name"],
            o.get("spec", {}).get("replicas", 1),
            o.get("status", {}).get("replicas", 0),
            o.get("status", {}).get("readyReplicas", 0),
            age(o["metadata"].get("creationTimestamp")),
            *_containers(o),
            _sel(o),
        ],
    ),
    "DaemonSet": (
        [
            NAME,
            _col("Desired", "integer"),
            _col("Current", "integer"),
            _col("Ready", "integer"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            _col("Node Selector"),
            AGE,
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        lambda o: [
            o["metadata"]["name"],
            *(
                o.get("status", {}).get(k, 0)
                for k in (
                    "desiredNumberScheduled",
                    "currentNumberScheduled",
                    "numberReady",
                    "updatedNumberScheduled",
                    "numberAvailable",
                )
            ),
            ",".join(
                f"{k}={v}"
                for k, v in (
                    o.get("spec", {}).get("template", {}).get("spec", {}).get("nodeSelector") or {}
                ).items()
            )
            or "<none>",
            age(o["metadata"].get("creationTimestamp")),
            *_containers(o),
            _sel(o),
        ],
    ),
    "PodDisruptionBudget": (
        [
            NAME,
            _col("Min Available"),
            _col("Max Unavailable"),
            _col("Allowed Disruptions", "integer"),
            AGE,
        ],
        _pdb_row,
    ),
    "CertificateSigningRequest": (
        [
            NAME,
            AGE,
            _col("SignerName"),
            _col("Requestor"),
            _col("RequestedDuration"),
            _col("Condition"),
        ],
        lambda o: [
            o["metadata"]["name"],
            age(o["metadata"].get("creationTimestamp")),
            o.get("spec", {}).get("signerName", ""),
            o.get("spec", {}).get("username", ""),
            "<none>",
            _csr_condition(o),
        ],
    ),
    "ServiceAccount": (
        [NAME, _col("Secrets", "integer"), AGE],
        lambda o: [
            o["metadata"]["name"],
            len(o.get("secrets") or []),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "Service": (
        [NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), AGE],
        lambda o: [
            o["metadata"]["name"],
            o.get("spec", {}).get("type", "ClusterIP"),
            o.get("spec", {}).get("clusterIP", "<none>"),
            "<none>",
            ",".join(
                f"{p.get('port')}/{p.get('protocol', 'TCP')}"
                for p in o.get("spec", {}).get("ports") or []
            )
            or "<none>",
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "Lease": (
        [NAME, _col("Holder"), AGE],
        lambda o: [
            o["metadata"]["name"],
            o.get("spec", {}).get("holderIdentity", ""),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
}
DEFAULT = (
    [NAME, _col("Created At", "date")],
    lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")],
)


def partial_metadata(obj: dict) -> dict:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


# --- custom resources ---------------------------------------------------------------------------
# apiextensions-apiserver kubernetes-1.33.0 pkg/registry/customresource/tableconvertor: Name,
# then the version's additionalPrinterColumns (by default one "Age" column on
# .metadata.creationTimestamp), each the first result of its JSONPath.
CR_NAME = _col(
    "Name",
    fmt="name",
    desc="Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an appropriate "
    "name automatically. Name is primarily intended for creation idempotence and "
    "configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
)
_MISSING = object()
_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_$-]+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[\*\]|\.\*"""
    r"""|\[(?P<q>['"])(?P<key>.*?)(?P=q)\]"""
    r"""|\[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_$-]+)+)\s*(?P<op>==|!=)\s*"""
    r"""(?:(?P<fq>['"])(?P<fstr>.*?)(?P=fq)|(?P<fnum>-?\d+(?:\.\d+)?))\)\]"""
)


def jsonpath_first(obj, path: str):
    """The first value a simple JSONPath (`.a.b`, `[0]`, `[*]`, `['k']`,
    `[?(@.type=="Ready")]`) finds in obj; _MISSING when none (missing keys are allowed, as
    upstream's AllowMissingKeys). Anything more elaborate finds nothing."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    current, pos = [obj], 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if not m:
            return _MISSING
        pos = m.end()
        nxt = []
        for value in current:
            if m.group("field") is not None or m.group("key") is not None:
                k = m.group("field") if m.group("field") is not None else m.group("key")
                if isinstance(value, dict) and k in value:
                    nxt.append(value[k])
            elif m.group("index") is not None:
                i = int(m.group("index"))
                if isinstance(value, list) and -len(value) <= i < len(value):
                    nxt.append(value[i])
            elif m.group("op"):
                want = m.group("fstr") if m.group("fq") else m.group("fnum")
                for item in value if isinstance(value, list) else []:
                    got = jsonpath_first(item, m.group("fpath"))
                    text = None if got is _MISSING else _go_text(got)
                    if (text == want) == (m.group("op") == "=="):
                        nxt.append(item)
            elif isinstance(value, list):
                nxt += value
            elif isinstance(value, dict):
                nxt += list(value.values())
        current = nxt
    return current[0] if current else _MISSING


def _go_text(value) -> str:
    """fmt.Fprint of a decoded JSON value, as jsonpath's PrintResults does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, list):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _cr_cell(typ: str, value):
    """tableconvertor.go: strings printed, other types converted or nil."""
    if value is _MISSING or value is None:
        return None
    if typ == "string":
        return _go_text(value)
    if typ == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if typ == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ == "boolean" and isinstance(value, bool):
        return value
    if typ == "date" and isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return age(t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return None


def custom_columns(res: Resource):
    specs = res.extra.get("columns") or []
    cols = [CR_NAME] + [
        {
            "name": c.get("name", ""),
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description")
            or f"Custom resource definition column (in JSONPath format): {c.get('jsonPath', '')}",
            "priority": int(c.get("priority", 0)),
        }
        for c in specs
    ]

    def row(obj: dict) -> list:
        return [obj["metadata"]["name"]] + [
            _cr_cell(c.get("type", "string"), jsonpath_first(obj, c.get("jsonPath", "")))
            for c in specs
        ]

    return cols, row


def to_table(
    res: Resource,
    items: list[dict],
    resource_version: str,
    include: str,
    list_meta: dict | None = None,
) -> dict:
    cols, row = custom_columns(res) if res.custom else COLUMNS.get(res.kind, DEFAULT)
    rows = []
    for obj in items:
        r = {"cells": row(obj)}
        if include == "Object":
            r["object"] = obj
        elif include != "None":
            r["object"] = partial_metadata(obj)
        rows.append(r)
    meta = {"resourceVersion": resource_version}
    meta.update(list_meta or {})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": cols,
        "rows": rows,
    }
