"""Create, read, update, patch and delete with upstream's object semantics: uid,
creationTimestamp, generation, resourceVersion preconditions, status subresources,
graceful pod deletion, finalizers, namespaces, evictions and bindings."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import ipaddress
import json
import random
import threading
import time
import uuid

from . import defaults, errors, policy
from . import patch as patches
from .policy import pod_ready
from .resources import BY_GV_PLURAL, BY_KIND, RESOURCES, Resource
from .storage import Storage

GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Upstream's EvictionsRetry: 20 tries, 500 ms apart with 10 % jitter.
EVICTION_RETRIES = 20


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def later_rfc3339(seconds: int) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def res(group: str, plural: str) -> Resource:
    return next(r for r in RESOURCES if r.group == group and r.plural == plural)


class Registry:
    def __init__(self, storage: Storage, service_cidr: str = "10.96.0.0/12"):
        self.store = storage
        self.service_net = ipaddress.ip_network(service_cidr.split(",")[0], strict=False)
        self._ip_lock = threading.Lock()

    # --- reads ------------------------------------------------------------------------------
    def get(self, r: Resource, ns: str | None, name: str) -> dict:
        return self.store.get(r, ns, name)

    def list(self, r: Resource, ns: str | None) -> tuple[list[dict], int]:
        return self.store.list(r, ns)

    # --- create -----------------------------------------------------------------------------
    def create(
        self, r: Resource, ns: str | None, obj: dict, user=None, dry_run: bool = False
    ) -> dict:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request was in an unknown format")
        expected_kind = r.kind
        if obj.get("kind") and obj["kind"] != expected_kind:
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) "
                f"does not match the expected API version ({r.group_version})"
                if obj.get("apiVersion") != r.group_version
                else f"kind {obj['kind']} does not match {expected_kind}"
            )
        obj = copy.deepcopy(obj)
        obj["kind"], obj["apiVersion"] = r.kind, r.group_version
        md = obj.setdefault("metadata", {})
        if r.namespaced:
            if md.get("namespace") and ns and md["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request"
                )
            md["namespace"] = ns or md.get("namespace") or "default"
            self._require_namespace(md["namespace"])
        else:
            md.pop("namespace", None)
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + "".join(
                    random.choice(GENERATE_ALPHABET) for _ in range(5)
                )
            else:
                raise errors.invalid(
                    r, "", "metadata.name: Required value: name or generateName is required"
                )
        if md.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(k, None)
        if r.tracks_generation:
            md["generation"] = 1
        defaults.on_create(r.kind, obj)
        if r.kind == "Service":
            self._allocate_cluster_ip(obj)
        if r.kind == "CertificateSigningRequest" and user is not None:
            obj["spec"]["username"] = user.name
            obj["spec"]["groups"] = user.groups
            obj["spec"]["uid"] = user.uid or ""
        if r.kind == "Pod" and obj["spec"].get("nodeName"):
            obj["status"]["conditions"] = [_cond("PodScheduled", "True")]
        if dry_run:
            return obj
        return self.store.create(r, obj)

    def _require_namespace(self, ns: str) -> None:
        try:
            got = self.store.get(BY_KIND[("", "Namespace")], None, ns)
        except errors.StatusError:
            raise errors.StatusError(
                404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
            ) from None
        if got.get("status", {}).get("phase") == "Terminating":
            raise errors.StatusError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {ns} because it is being terminated",
            )

    def _allocate_cluster_ip(self, svc: dict) -> None:
        spec = svc["spec"]
        if spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
            return
        with self._ip_lock:
            used = {
                s.get("spec", {}).get("clusterIP")
                for s in self.store.list(BY_KIND[("", "Service")], None)[0]
            }
            want = spec.get("clusterIP")
            if want:
                if want in used:
                    raise errors.invalid(
                        BY_KIND[("", "Service")],
                        svc["metadata"]["name"],
                        f'spec.clusterIPs: Invalid value: []string{{"{want}"}}: '
                        "failed to allocate IP: provided IP is already allocated",
                    )
            else:
                for ip in list(self.service_net.hosts())[9:]:
                    if str(ip) not in used:
                        want = str(ip)
                        break
            spec["clusterIP"] = want
            spec["clusterIPs"] = [want]

    # --- update -----------------------------------------------------------------------------
    def update(
        self,
        r: Resource,
        ns: str | None,
        name: str,
        obj: dict,
        sub: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        current = self.store.get(r, ns, name)
        wanted_rv = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(r, name)
        return self._write_update(r, current, obj, sub, dry_run)

    def _write_update(
        self, r: Resource, current: dict, obj: dict, sub: str | None, dry_run: bool = False
    ) -> dict:
        name = current["metadata"]["name"]
        if (obj.get("metadata") or {}).get("name", name) != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        new = copy.deepcopy(obj)
        new["kind"], new["apiVersion"] = r.kind, r.group_version
        md = new.setdefault("metadata", {})
        cur_md = current["metadata"]
        for k in (
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if k in cur_md:
                md[k] = cur_md[k]
            else:
                md.pop(k, None)
        if "generation" in cur_md:
            md["generation"] = cur_md["generation"]
        if sub in ("status", "approval"):
            keep = copy.deepcopy(current)
            keep["status"] = new.get("status", {})
            if sub == "approval":
                keep["status"] = dict(
                    current.get("status", {}),
                    conditions=new.get("status", {}).get("conditions", []),
                )
            keep["metadata"] = dict(current["metadata"])
            for k in ("labels", "annotations"):
                if k in md:
                    keep["metadata"][k] = md[k]
            new = keep
        elif "status" in r.subresources and r.kind != "CertificateSigningRequest":
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if r.tracks_generation and sub is None and new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = int(cur_md.get("generation", 1)) + 1
        if r.kind == "Pod" and sub is None:
            old_spec, new_spec = current.get("spec", {}), new.get("spec", {})
            for k in ("containers", "nodeName", "volumes", "initContainers"):
                if json.dumps(old_spec.get(k), sort_keys=True) != json.dumps(
                    new_spec.get(k), sort_keys=True
                ) and not (k == "containers" and _only_images_changed(old_spec, new_spec)):
                    raise errors.invalid(
                        r,
                        name,
                        "spec: Forbidden: pod updates may not change "
                        "fields other than `spec.containers[*].image`, "
                        "`spec.initContainers[*].image`, "
                        "`spec.activeDeadlineSeconds`, `spec.tolerations` "
                        "(only additions to existing tolerations), "
                        "`spec.terminationGracePeriodSeconds` (allow it to be "
                        "set to 1 if it was previously negative)",
                    )
        if dry_run:
            new["metadata"]["resourceVersion"] = cur_md["resourceVersion"]
            return new
        if (
            md.get("deletionTimestamp")
            and not new["metadata"].get("finalizers")
            and r.kind != "Pod"
            and r.kind != "Namespace"
        ):
            new["metadata"]["resourceVersion"] = cur_md["resourceVersion"]
            self.store.delete(r, new)
            return new
        stored = self.store.update(r, new, int(cur_md["resourceVersion"]))
        if (
            r.kind == "Pod"
            and md.get("deletionTimestamp")
            and not md.get("finalizers")
            and md.get("deletionGracePeriodSeconds") == 0
        ):
            self.store.delete(r, stored)
        return stored

    # --- patch ------------------------------------------------------------------------------
    def patch(
        self,
        r: Resource,
        ns: str | None,
        name: str,
        body: bytes,
        ctype: str,
        sub: str | None = None,
        dry_run: bool = False,
        create_if_missing: bool = False,
        user=None,
    ) -> dict:
        try:
            doc = json.loads(body) if not ctype.startswith("application/apply-patch") else None
        except ValueError as e:
            raise errors.bad_request(f"error decoding patch: {e}") from e
        if doc is None:
            import yaml

            doc = yaml.safe_load(body)
        for _ in range(10):
            try:
                current = self.store.get(r, ns, name)
            except errors.StatusError as e:
                if e.code == 404 and ctype.startswith("application/apply-patch"):
                    doc.setdefault("metadata", {}).setdefault("name", name)
                    return self.create(r, ns, doc, user, dry_run)
                raise
            base = copy.deepcopy(current)
            if ctype.startswith("application/json-patch"):
                new = patches.json_patch(base, doc)
            elif ctype.startswith("application/strategic-merge-patch"):
                new = patches.strategic_merge(base, doc, kind=r.kind)
            else:
                new = patches.merge_patch(base, doc)
            wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(r, name)
            try:
                return self._write_update(r, current, new, sub, dry_run)
            except errors.StatusError as e:
                if e.reason != "Conflict" or (
                    isinstance(doc, dict) and doc.get("metadata", {}).get("resourceVersion")
                ):
                    raise
        raise errors.conflict(r, name)

    # --- delete -----------------------------------------------------------------------------
    def delete(
        self,
        r: Resource,
        ns: str | None,
        name: str,
        options: dict | None = None,
        dry_run: bool = False,
    ) -> dict:
        options = options or {}
        current = self.store.get(r, ns, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
            raise errors.StatusError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: "
                f"{pre['uid']}, UID in object meta: {current['metadata']['uid']}",
            )
        if (
            pre.get("resourceVersion")
            and pre["resourceVersion"] != current["metadata"]["resourceVersion"]
        ):
            raise errors.StatusError(
                409,
                "Conflict",
                "Precondition failed: ResourceVersion in "
                f"precondition: {pre['resourceVersion']}, ResourceVersion in "
                f"object meta: {current['metadata']['resourceVersion']}",
            )
        if dry_run:
            return current
        md = current["metadata"]
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        if r.kind == "Namespace":
            return self._delete_namespace(r, current)
        if r.kind == "Pod":
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                grace = current.get("spec", {}).get("terminationGracePeriodSeconds", 30)
            bound = bool(current.get("spec", {}).get("nodeName"))
            terminal = current.get("status", {}).get("phase") in ("Succeeded", "Failed")
            if bound and not terminal and int(grace) > 0:
                if (
                    md.get("deletionTimestamp")
                    and md.get("deletionGracePeriodSeconds", 1e9) <= grace
                ):
                    return current
                md["deletionTimestamp"] = later_rfc3339(int(grace))
                md["deletionGracePeriodSeconds"] = int(grace)
                return self.store.update(r, current, int(md["resourceVersion"]))
        if md.get("finalizers"):
            if not md.get("deletionTimestamp"):
                md["deletionTimestamp"] = now_rfc3339()
                md["deletionGracePeriodSeconds"] = 0
                return self.store.update(r, current, int(md["resourceVersion"]))
            return current
        if policy == "Foreground":
            self._delete_dependents(md["uid"], ns)
        self.store.delete(r, current)
        if policy == "Orphan":
            self._orphan_dependents(md["uid"], ns)
        return current

    def _dependents(self, uid: str, ns: str | None):
        for r in RESOURCES:
            if not r.stored or (ns and not r.namespaced):
                continue
            items, _ = self.store.list(r, ns if r.namespaced else None)
            for obj in items:
                if any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences") or []):
                    yield r, obj

    def _delete_dependents(self, uid: str, ns: str | None) -> None:
        for r, obj in list(self._dependents(uid, ns)):
            with contextlib.suppress(errors.StatusError):
                self.delete(
                    r,
                    obj["metadata"].get("namespace"),
                    obj["metadata"]["name"],
                    {"propagationPolicy": "Foreground", "gracePeriodSeconds": 0}
                    if r.kind != "Pod"
                    else {},
                )

    def _orphan_dependents(self, uid: str, ns: str | None) -> None:
        for r, obj in list(self._dependents(uid, ns)):
            refs = [o for o in obj["metadata"].get("ownerReferences") or [] if o.get("uid") != uid]
            obj["metadata"]["ownerReferences"] = refs
            with contextlib.suppress(errors.StatusError):
                self.store.update(r, obj, int(obj["metadata"]["resourceVersion"]))

    def _delete_namespace(self, r: Resource, ns_obj: dict) -> dict:
        name = ns_obj["metadata"]["name"]
        if name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            raise errors.StatusError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
            )
        ns_obj["status"] = {"phase": "Terminating"}
        ns_obj["metadata"]["deletionTimestamp"] = now_rfc3339()
        ns_obj = self.store.update(r, ns_obj, int(ns_obj["metadata"]["resourceVersion"]))
        for other in RESOURCES:
            if other.stored and other.namespaced:
                for obj in self.store.list(other, name)[0]:
                    with contextlib.suppress(errors.StatusError):
                        self.store.delete(other, obj)
        self.store.delete(r, ns_obj)
        return ns_obj

    def delete_collection(self, r: Resource, ns: str | None, match, options: dict | None) -> dict:
        items, rev = self.store.list(r, ns)
        gone = []
        for obj in items:
            if match(obj):
                with contextlib.suppress(errors.StatusError):
                    gone.append(
                        self.delete(
                            r, obj["metadata"].get("namespace"), obj["metadata"]["name"], options
                        )
                    )
        return {
            "kind": f"{r.kind}List",
            "apiVersion": r.group_version,
            "metadata": {"resourceVersion": str(rev)},
            "items": gone,
        }

    # --- pods/eviction and pods/binding -----------------------------------------------------
    def evict(self, ns: str, name: str, body: dict, dry_run: bool = False) -> dict:
        """Upstream's eviction REST (kubernetes pkg/registry/core/pod/storage/eviction.go):
        budget-free deletion of pods that cannot disrupt anything, 500 for a pod under
        several budgets, budget-free deletion of an unready pod where the budget's policy
        allows it, else check-and-decrement of the one budget's stored status."""
        pods = BY_KIND[("", "Pod")]
        pdb_res = BY_GV_PLURAL[("policy/v1", "poddisruptionbudgets")]
        options = dict((body or {}).get("deleteOptions") or {})
        dry_run = dry_run or "All" in (options.get("dryRun") or [])
        client_pinned = bool((options.get("preconditions") or {}).get("resourceVersion"))

        for attempt in range(EVICTION_RETRIES):
            pod = self.store.get(pods, ns, name)
            if not policy.ignores_budgets(pod):
                break
            pinned = options
            if policy.deletion_pins_version(pod) and not client_pinned:
                pinned = _with_resource_version(options, pod)
            try:
                self.delete(pods, ns, name, pinned, dry_run)
                return _success()
            except errors.StatusError as e:
                if e.reason != "Conflict" or client_pinned or attempt == EVICTION_RETRIES - 1:
                    raise
            _eviction_backoff()

        budgets = policy.budgets_for(pod, self.store.list(pdb_res, ns)[0])
        if len(budgets) > 1:
            raise _StatusWithoutReason(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction "
                "subresource does not support.",
            )
        if budgets:
            pdb = budgets[0]
            pdb_name = pdb["metadata"]["name"]
            if not pod_ready(pod) and policy.unhealthy_pod_may_go(pdb):
                # Not counted as healthy, so the budget is not spent; the pinned version
                # makes sure the pod did not turn Ready in between.
                pinned = options if client_pinned else _with_resource_version(options, pod)
                try:
                    self.delete(pods, ns, name, pinned, dry_run)
                except errors.StatusError as e:
                    if e.reason == "Conflict" and not client_pinned:
                        raise policy.budget_busy(pdb_name) from e
                    raise
                return _success()
            for attempt in range(EVICTION_RETRIES):
                if attempt:
                    pdb = self.store.get(pdb_res, ns, pdb_name)
                status = policy.check_and_decrement(pdb, name, now_rfc3339(), dry_run)
                if dry_run:
                    break
                try:
                    self.store.update(
                        pdb_res, dict(pdb, status=status), int(pdb["metadata"]["resourceVersion"])
                    )
                    break
                except errors.StatusError as e:
                    if e.reason != "Conflict" or attempt == EVICTION_RETRIES - 1:
                        raise
                _eviction_backoff()
        self.delete(pods, ns, name, options, dry_run)
        return _success()

    def bind(self, ns: str, name: str, body: dict) -> dict:
        pods = BY_KIND[("", "Pod")]
        target = (body or {}).get("target") or {}
        for _ in range(5):
            pod = self.store.get(pods, ns, name)
            if pod.get("spec", {}).get("nodeName"):
                raise errors.StatusError(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on "
                    f'pods/binding "{name}": pod {name} is already assigned '
                    f'to node "{pod["spec"]["nodeName"]}"',
                )
            pod["spec"]["nodeName"] = target.get("name")
            conds = [
                c
                for c in pod.get("status", {}).get("conditions") or []
                if c.get("type") != "PodScheduled"
            ]
            pod.setdefault("status", {})["conditions"] = [*conds, _cond("PodScheduled", "True")]
            try:
                self.store.update(pods, pod, int(pod["metadata"]["resourceVersion"]))
                return _success(201)
            except errors.StatusError as e:
                if e.reason != "Conflict":
                    raise
        raise errors.conflict(pods, name)


def _only_images_changed(old: dict, new: dict) -> bool:
    a, b = copy.deepcopy(old.get("containers")), copy.deepcopy(new.get("containers"))
    for c in (a or []) + (b or []):
        c.pop("image", None)
    return a == b


def _cond(typ: str, status: str, reason: str | None = None) -> dict:
    c = {"type": typ, "status": status, "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
    if reason:
        c["reason"] = reason
    return c


def _with_resource_version(options: dict, pod: dict) -> dict:
    pre = dict(options.get("preconditions") or {})
    pre["resourceVersion"] = pod["metadata"]["resourceVersion"]
    return dict(options, preconditions=pre)


def _eviction_backoff() -> None:
    time.sleep(0.5 * (1 + 0.1 * random.random()))


class _StatusWithoutReason(errors.StatusError):
    """A failure Status returned as the eviction's result: upstream's carries a code and a
    message but no reason."""

    def __init__(self, code: int, message: str):
        super().__init__(code, "", message)

    def status(self) -> dict:
        body = super().status()
        del body["reason"]
        return body


def _success(code: int = 201) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}
