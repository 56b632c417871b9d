"""Decoding of the Kubernetes protobuf wire format for the request bodies that kubectl's
typed clients send (kubectl 1.32+ writes protobuf for built-in types: evictions during
`kubectl drain`, `kubectl create configmap|secret|namespace|serviceaccount`).

Only the kinds listed in KINDS are understood; others are refused with 415, which is what
an upstream server would answer for a media type it cannot decode. Responses are always
JSON (kubectl accepts both).
"""

from __future__ import annotations

import base64
import datetime as dt

from . import errors

MAGIC = b"k8s\x00"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise errors.bad_request(f"protobuf: unsupported wire type {wt}")
        yield num, wt, v


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


TIME = "time"
TYPE_META = {1: ("apiVersion", "string"), 2: ("kind", "string")}
OWNER_REF = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
OBJECT_META = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    4: ("selfLink", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int64"),
    8: ("creationTimestamp", TIME),
    9: ("deletionTimestamp", TIME),
    10: ("deletionGracePeriodSeconds", "int64"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("repeated", OWNER_REF)),
    14: ("finalizers", ("repeated", "string")),
}
PRECONDITIONS = {1: ("uid", "string"), 2: ("resourceVersion", "string")}
DELETE_OPTIONS = {
    1: ("gracePeriodSeconds", "int64"),
    2: ("preconditions", PRECONDITIONS),
    3: ("orphanDependents", "bool"),
    4: ("propagationPolicy", "string"),
    5: ("dryRun", ("repeated", "string")),
    6: ("ignoreStoreReadErrorWithClusterBreakingPotential", "bool"),
}
LOCAL_REF = {1: ("name", "string")}
OBJECT_REF = {
    1: ("kind", "string"),
    2: ("namespace", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("resourceVersion", "string"),
    7: ("fieldPath", "string"),
}
KINDS = {
    ("policy/v1", "Eviction"): {1: ("metadata", OBJECT_META), 2: ("deleteOptions", DELETE_OPTIONS)},
    ("policy/v1beta1", "Eviction"): {
        1: ("metadata", OBJECT_META),
        2: ("deleteOptions", DELETE_OPTIONS),
    },
    ("v1", "DeleteOptions"): DELETE_OPTIONS,
    ("meta.k8s.io/v1", "DeleteOptions"): DELETE_OPTIONS,
    ("v1", "ConfigMap"): {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    ("v1", "Namespace"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", OBJECT_META),
        2: ("secrets", ("repeated", OBJECT_REF)),
        3: ("imagePullSecrets", ("repeated", LOCAL_REF)),
        4: ("automountServiceAccountToken", "bool"),
    },
    ("v1", "Binding"): {1: ("metadata", OBJECT_META), 2: ("target", OBJECT_REF)},
}


def _scalar(typ, wt: int, v):
    if typ == "string":
        return v.decode()
    if typ == "bytes":
        return base64.b64encode(v).decode()
    if typ == "int64":
        return _signed(v)
    if typ == "bool":
        return bool(v)
    if typ == TIME:
        t = _message({1: ("seconds", "int64"), 2: ("nanos", "int64")}, v)
        return dt.datetime.fromtimestamp(t.get("seconds", 0), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(typ, dict):
        return _message(typ, v)
    raise errors.bad_request(f"protobuf: unknown field type {typ}")


def _message(schema: dict, buf: bytes) -> dict:
    out: dict = {}
    for num, wt, v in _fields(buf):
        if num not in schema:
            continue  # fields this stand-in does not know are dropped
        name, typ = schema[num]
        if isinstance(typ, tuple) and typ[0] == "map":
            entry = dict((n, val) for n, _, val in _fields(v))
            key = entry.get(1, b"").decode()
            out.setdefault(name, {})[key] = _scalar(typ[1], 2, entry.get(2, b""))
        elif isinstance(typ, tuple) and typ[0] == "repeated":
            out.setdefault(name, []).append(_scalar(typ[1], wt, v))
        else:
            value = _scalar(typ, wt, v)
            # Go's JSON omits empty strings (and a zero generation); proto2 carries them.
            if value == "" or (name == "generation" and value == 0):
                continue
            out[name] = value
    return out


def decode(body: bytes) -> dict:
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf: missing the k8s envelope prefix")
    env = dict((n, v) for n, _, v in _fields(body[len(MAGIC) :]))
    tm = _message(TYPE_META, env.get(1, b""))
    schema = KINDS.get((tm.get("apiVersion"), tm.get("kind")))
    if schema is None:
        raise errors.StatusError(
            415,
            "UnsupportedMediaType",
            f"the k8sboot lab API server cannot decode "
            f"{tm.get('kind')} ({tm.get('apiVersion')}) from protobuf; "
            "send JSON (for example `kubectl create -f` instead of "
            "`kubectl create <kind>`)",
        )
    obj = _message(schema, env.get(2, b""))
    obj["apiVersion"], obj["kind"] = tm["apiVersion"], tm["kind"]
    return obj
