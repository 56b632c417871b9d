"""Objects as JSON in etcd at upstream's keys; resourceVersion is etcd's mod revision.

Custom objects are kept with their definition's storage version as apiVersion and read back
with the version asked for (upstream's "None" conversion changes nothing else)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from ..etcd import Etcd
from . import errors
from .resources import Resource


def key_for(res: Resource, namespace: str | None, name: str) -> str:
    if res.namespaced:
        return f"{res.etcd_prefix()}{namespace}/{name}"
    return f"{res.etcd_prefix()}{name}"


def _decode(raw: bytes, rev: int, res: Resource) -> dict:
    obj = json.loads(raw)
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    if res.custom:
        obj["apiVersion"] = res.group_version
    return obj


def _encode(obj: dict, res: Resource) -> bytes:
    md = obj.get("metadata", {})
    clean = dict(obj, metadata={k: v for k, v in md.items() if k != "resourceVersion"})
    if res.custom:
        clean["apiVersion"] = f"{res.group}/{res.extra['storage']}"
    return json.dumps(clean, separators=(",", ":")).encode()


class Storage:
    def __init__(self, etcd: Etcd):
        self.etcd = etcd

    def get(self, res: Resource, namespace: str | None, name: str) -> dict:
        got = self.etcd.get(key_for(res, namespace, name))
        if got is None:
            raise errors.not_found(res, name)
        return _decode(*got, res)

    def list(self, res: Resource, namespace: str | None) -> tuple[list[dict], int]:
        prefix = res.etcd_prefix() + (f"{namespace}/" if res.namespaced and namespace else "")
        kvs, rev = self.etcd.range_prefix(prefix)
        items = []
        for key, value, mod in kvs:
            rest = key[len(res.etcd_prefix()) :]
            # /registry/services/specs/... and /registry/services/endpoints/... share a prefix
            # with nothing else here, but keep only keys of the right depth.
            if rest.count("/") != (1 if res.namespaced else 0):
                continue
            items.append(_decode(value, mod, res))
        return items, rev

    def create(self, res: Resource, obj: dict) -> dict:
        md = obj["metadata"]
        rev = self.etcd.txn_put(key_for(res, md.get("namespace"), md["name"]), _encode(obj, res), 0)
        if rev is None:
            raise errors.already_exists(res, md["name"])
        md["resourceVersion"] = str(rev)
        return obj

    def update(self, res: Resource, obj: dict, expected: int) -> dict:
        md = obj["metadata"]
        rev = self.etcd.txn_put(
            key_for(res, md.get("namespace"), md["name"]), _encode(obj, res), expected
        )
        if rev is None:
            if self.etcd.get(key_for(res, md.get("namespace"), md["name"])) is None:
                raise errors.not_found(res, md["name"])
            raise errors.conflict(res, md["name"])
        md["resourceVersion"] = str(rev)
        return obj

    def delete(self, res: Resource, obj: dict) -> dict:
        md = obj["metadata"]
        rev = self.etcd.txn_delete(
            key_for(res, md.get("namespace"), md["name"]), int(md["resourceVersion"])
        )
        if rev is None:
            raise errors.conflict(res, md["name"])
        return obj

    def watch(
        self, res: Resource, namespace: str | None, since: int, stop
    ) -> Iterator[tuple[str, dict] | None]:
        """(ADDED|MODIFIED|DELETED, object) after revision `since`; None on idle ticks."""
        prefix = res.etcd_prefix() + (f"{namespace}/" if res.namespaced and namespace else "")
        depth = 1 if res.namespaced else 0
        for ev in self.etcd.watch(prefix, since + 1, stop):
            if ev is None:
                yield None
                continue
            typ, key, value, prev, mod = ev
            if key[len(res.etcd_prefix()) :].count("/") != depth:
                continue
            if typ == "DELETE":
                if prev is not None:
                    yield "DELETED", _decode(prev, mod, res)
            else:
                yield ("MODIFIED" if prev is not None else "ADDED"), _decode(value, mod, res)
