"""Create, read, update, patch and delete with upstream's object semantics: uid,
creationTimestamp, generation, resourceVersion preconditions, status subresources,
graceful pod deletion, finalizers, namespaces, evictions and bindings, and
CustomResourceDefinitions with their custom objects (see crds.py)."""

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

from .. import versions
from . import crds, defaults, errors, policy
from . import patch as patches
from .crds import CLEANUP_FINALIZER, CRD
from .policy import pod_ready
from .resources import BY_GV_PLURAL, BY_KIND, RESOURCES, Resource
from .storage import Storage

GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# apimachinery pkg/api/validation/objectmeta.go TotalAnnotationSizeLimitB
ANNOTATIONS_LIMIT = 256 * 1024
# Upstream's EvictionsRetry: 20 tries, 500 ms apart with 10 % jitter.
EVICTION_RETRIES = 20


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def later_rfc3339(seconds: int) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def res(group: str, plural: str) -> Resource:
    return next(r for r in RESOURCES if r.group == group and r.plural == plural)


def builtin_kind(r: Resource) -> str:
    """The kind for kind-specific behaviour: none for custom resources, whose kinds may
    well be called Pod or Service in their own groups."""
    return "" if r.custom else r.kind


def is_crd(r: Resource) -> bool:
    return r.group == CRD.group and r.plural == CRD.plural


class Registry:
    def __init__(
        self, storage: Storage, service_cidr: str = "10.96.0.0/12", version: str | None = None
    ):
        self.store = storage
        self.service_net = ipaddress.ip_network(service_cidr.split(",")[0], strict=False)
        self._ip_lock = threading.Lock()
        self.crds = crds.CustomResources(storage)
        self.minor = versions.minor(version)

    def all_resources(self) -> list[Resource]:
        """The built-in resources and the custom ones served now (discovery, OpenAPI)."""
        return [*RESOURCES, *self.crds.served()]

    def _check_annotations(self, r: Resource, obj: dict) -> None:
        """ValidateObjectMeta's size limit on annotations (what makes a client-side
        `kubectl apply` of a large CRD fail upstream); the message changed in 1.32."""
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in ann.items())
        if size > ANNOTATIONS_LIMIT:
            limit = (
                f"may not be more than {ANNOTATIONS_LIMIT} bytes"
                if self.minor >= 32
                else f"must have at most {ANNOTATIONS_LIMIT} bytes"
            )
            raise errors.invalid(
                r, obj["metadata"].get("name", ""), f"metadata.annotations: Too long: {limit}"
            )

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
        if r.custom and r.extra.get("terminating"):
            raise errors.StatusError(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
                {"group": r.group, "kind": r.plural},
            )
        kind = builtin_kind(r)
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
        if r.custom:
            if "status" in r.subresources:
                obj.pop("status", None)  # customresource strategy: create cannot set status
        else:
            defaults.on_create(r.kind, obj)
        if is_crd(r):
            crds.prepare_create(obj)
            problems = crds.validate(obj)
            if problems:
                raise errors.invalid(r, md["name"], problems)
        self._check_annotations(r, obj)
        if kind == "Service":
            self._allocate_cluster_ip(obj)
        if kind == "CertificateSigningRequest" and user is not None:
            obj["spec"]["username"] = user.name
            obj["spec"]["groups"] = user.groups
            obj["spec"]["uid"] = user.uid or ""
        if kind == "Pod" and obj["spec"].get("nodeName"):
            obj["status"]["conditions"] = [_cond("PodScheduled", "True")]
        if dry_run:
            return obj
        created = self.store.create(r, obj)
        if is_crd(r):
            # The create answers with the definition as stored; the naming and establishing
            # controllers' status updates follow (upstream: within milliseconds).
            self.crds.invalidate()
            self._reconcile_crd(md["name"])
        return created

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
        kind = builtin_kind(r)
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
            if r.custom:
                # customresource status_strategy.go: the old object with the new status.
                if "status" not in new:
                    keep.pop("status", None)
            else:
                for k in ("labels", "annotations"):
                    if k in md:
                        keep["metadata"][k] = md[k]
            new = keep
        elif "status" in r.subresources and kind != "CertificateSigningRequest":
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if is_crd(r) and sub is None:
            crds.prepare_update(new, current)
            problems = crds.validate(new)
            if problems:
                raise errors.invalid(r, name, problems)
        self._check_annotations(r, new)
        if r.tracks_generation and sub is None:
            if r.custom:  # customresource strategy.go: any change outside metadata
                changed = _without_metadata(new) != _without_metadata(current)
            else:
                changed = new.get("spec") != current.get("spec")
            if changed:
                new["metadata"]["generation"] = int(cur_md.get("generation", 1)) + 1
        if kind == "Pod" and sub is None:
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
            and kind != "Pod"
            and kind != "Namespace"
        ):
            new["metadata"]["resourceVersion"] = cur_md["resourceVersion"]
            self.store.delete(r, new)
            if r.custom:
                self._custom_object_gone(r)
            if is_crd(r):
                self.crds.invalidate()
                self._reconcile_group(new.get("spec", {}).get("group", ""), name)
            return new
        stored = self.store.update(r, new, int(cur_md["resourceVersion"]))
        if is_crd(r):
            self.crds.invalidate()
            self._reconcile_crd(name)
        if (
            kind == "Pod"
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
        apply = ctype.startswith("application/apply-patch")
        try:
            doc = json.loads(body)
        except ValueError as e:
            if not apply:
                raise errors.bad_request(f"error decoding patch: {e}") from e
            import yaml  # apply patches are YAML; kubectl sends JSON, which is YAML too

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
                new = patches.strategic_merge(base, doc, kind=builtin_kind(r))
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
        kind = builtin_kind(r)
        if kind == "Namespace":
            return self._delete_namespace(r, current)
        if is_crd(r):
            return self._delete_crd(current)
        if kind == "Pod":
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
        for r in [*RESOURCES, *self.crds.stored()]:
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
        for other in [*RESOURCES, *self.crds.stored()]:
            if other.stored and other.namespaced:
                for obj in self.store.list(other, name)[0]:
                    with contextlib.suppress(errors.StatusError):
                        self.store.delete(other, obj)
        self.store.delete(r, ns_obj)
        return ns_obj

    # --- CustomResourceDefinitions ----------------------------------------------------------
    def _reconcile_crd(self, name: str, requeue: bool = True) -> None:
        """The naming controller, then the establishing controller, for one definition
        (crds.py), retried on conflicts; a change of accepted names reconsiders the others
        of its group, as upstream's requeueAllOtherGroupCRDs."""
        changed_names = False
        for _ in range(10):
            crd = self.crds.definition(name)
            if crd is None:
                return
            status = crd.setdefault("status", {})
            try:
                spec_names = crd.get("spec", {}).get("names") or {}
                if spec_names != (status.get("acceptedNames") or {}):
                    group = crd.get("spec", {}).get("group", "")
                    group_crds = [
                        c
                        for c in self.store.list(CRD, None)[0]
                        if c.get("spec", {}).get("group") == group
                    ]
                    accepted, named, established = crds.calculate_names(crd, group_crds)
                    old = crds.condition(crd, "NamesAccepted") or {}
                    if accepted != status.get("acceptedNames") or any(
                        old.get(k) != named[k] for k in ("status", "reason", "message")
                    ):
                        status["acceptedNames"] = accepted
                        crds.set_condition(
                            crd, "NamesAccepted", named["status"], named["reason"], named["message"]
                        )
                        crds.set_condition(
                            crd,
                            "Established",
                            established["status"],
                            established.get("reason", ""),
                            established.get("message", ""),
                        )
                        crd = self.store.update(CRD, crd, int(crd["metadata"]["resourceVersion"]))
                        self.crds.invalidate()
                        changed_names = True
                if crds.is_true(crd, "NamesAccepted") and not crds.is_true(crd, "Established"):
                    crds.set_condition(
                        crd,
                        "Established",
                        "True",
                        "InitialNamesAccepted",
                        "the initial names have been accepted",
                    )
                    self.store.update(CRD, crd, int(crd["metadata"]["resourceVersion"]))
                    self.crds.invalidate()
                break
            except errors.StatusError as e:
                if e.code == 404:
                    return
                if e.code != 409:
                    raise
        if changed_names and requeue:
            self._reconcile_group(crd.get("spec", {}).get("group", ""), name)

    def _reconcile_group(self, group: str, but: str) -> None:
        for other in self.store.list(CRD, None)[0]:
            spec = other.get("spec") or {}
            if spec.get("group") != group or other["metadata"]["name"] == but:
                continue
            if spec.get("names") != (other.get("status") or {}).get("acceptedNames"):
                self._reconcile_crd(other["metadata"]["name"], requeue=False)

    def _delete_crd(self, crd: dict) -> dict:
        """customresourcedefinition/etcd.go Delete: the first request marks the definition
        (deletionTimestamp, the cleanup finalizer, Terminating); then what upstream's
        finalizer controller does, here at once (crd_finalizer.go)."""
        md = crd["metadata"]
        if not md.get("deletionTimestamp"):
            md["deletionTimestamp"] = now_rfc3339()
            if CLEANUP_FINALIZER not in (md.get("finalizers") or []):
                md["finalizers"] = [*(md.get("finalizers") or []), CLEANUP_FINALIZER]
            crds.set_condition(
                crd,
                "Terminating",
                "True",
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; CustomResource deletion will "
                "begin soon",
            )
            crd = self.store.update(CRD, crd, int(md["resourceVersion"]))
            self.crds.invalidate()
        return self._finalize_crd(crd)

    def _finalize_crd(self, crd: dict) -> dict:
        """crd_finalizer.go sync: delete every object (through the usual deletion, so their
        own finalizers hold them), then drop the finalizer, which deletes the definition.
        While objects remain (their finalizers pending) the definition stays Terminating;
        the removal of the last one finishes it (_custom_object_gone)."""
        md = crd["metadata"]
        if not md.get("deletionTimestamp") or CLEANUP_FINALIZER not in (md.get("finalizers") or []):
            return crd
        crds.set_condition(
            crd,
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        )
        crd = self.store.update(CRD, crd, int(md["resourceVersion"]))
        self.crds.invalidate()
        sv = crds.storage_version(crd)
        if crds.is_true(crd, "Established") and sv:
            r = crds.resource_for(crd, sv)
            for obj in self.store.list(r, None)[0]:
                with contextlib.suppress(errors.StatusError):
                    self.delete(r, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            if self.store.list(r, None)[0]:
                return crd
            done = ("False", "InstanceDeletionCompleted", "removed all instances")
        else:
            done = ("False", "NeverEstablished", "resource was never established")
        crds.set_condition(crd, "Terminating", *done)
        crd["metadata"]["finalizers"] = [
            f for f in crd["metadata"].get("finalizers") or [] if f != CLEANUP_FINALIZER
        ]
        if crd["metadata"]["finalizers"]:
            crd = self.store.update(CRD, crd, int(crd["metadata"]["resourceVersion"]))
        else:
            self.store.delete(CRD, crd)
            self._reconcile_group(crd.get("spec", {}).get("group", ""), md["name"])
        self.crds.invalidate()
        return crd

    def _custom_object_gone(self, r: Resource) -> None:
        """A custom object's last finalizer went: finish its definition's deletion if that
        was waiting for it."""
        crd = self.crds.definition(r.extra["crd"])
        if crd and crd["metadata"].get("deletionTimestamp"):
            with contextlib.suppress(errors.StatusError):
                self._finalize_crd(crd)

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


def _without_metadata(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "metadata"}


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
