"""CustomResourceDefinitions and the custom objects they define, stored generically.

Follows k8s.io/apiextensions-apiserver (kubernetes-1.33.0; 1.30-1.32 behave the same here):
- pkg/registry/customresourcedefinition/strategy.go and pkg/apis/apiextensions/v1/defaults.go:
  create clears the status but for storedVersions, sets generation 1 and defaults
  singular, listKind and conversion; updates keep the status and bump the generation on
  spec changes.
- pkg/controller/status/naming_controller.go: acceptedNames are the requested names unless
  another definition of the group holds them (NamesAccepted False with PluralConflict, ...);
  Established goes False "Installing" until pkg/controller/establish/ sets it True
  ("InitialNamesAccepted"). Both run here synchronously after every write.
- pkg/apiserver/customresource_handler.go: objects are served at
  /apis/<group>/<version>/[namespaces/<ns>/]<plural> for served versions while NamesAccepted
  or Established is True, with the definition's scope; create is refused while the
  definition is terminating; patches are JSON, merge and apply patches only.
- pkg/registry/customresource/strategy.go, status_strategy.go: generation 1 at create, +1
  on any change outside metadata; with a status subresource, create and update drop or
  keep status and only /status writes it.
- pkg/registry/customresourcedefinition/etcd.go and pkg/controller/finalizer/
  crd_finalizer.go: deleting a definition adds the customresourcecleanup finalizer and
  the Terminating condition, deletes every object, then the definition.
- pkg/apiserver/customresource_discovery_controller.go: discovery entries and verbs.
- Etcd keys /registry/<group>/<plural>/[<ns>/]<name> (kubernetes test/integration/etcd/
  data.go); objects are kept at the storage version, and served at the requested one with
  only apiVersion changed (conversion strategy None).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import re
import threading

from . import errors
from .resources import BY_GV_PLURAL, Resource

GROUP = "apiextensions.k8s.io"
CRD = BY_GV_PLURAL[(f"{GROUP}/v1", "customresourcedefinitions")]
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
CR_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
TERMINATING_VERBS = ("delete", "deletecollection", "get", "list", "watch")
AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "description": "CreationTimestamp is a timestamp representing the server time when this "
    "object was created. It is not guaranteed to be set in happens-before order across "
    "separate operations. Clients may not set this value. It is represented in RFC3339 "
    "form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#metadata",
    "jsonPath": ".metadata.creationTimestamp",
}


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- versions -----------------------------------------------------------------------------------
_KUBE_VERSION = re.compile(r"^v([0-9]+)(?:(alpha|beta)([0-9]+))?$")
_TYPE_RANK = {"alpha": 0, "beta": 1, None: 2}


def compare_versions(a: str, b: str) -> int:
    """apimachinery kubernetes-1.33.0 pkg/version/helpers.go CompareKubeAwareVersionStrings:
    GA > beta > alpha, then higher numbers; versions not shaped like Kubernetes' are lower,
    and among themselves the alphabetically first is the greater."""
    if a == b:
        return 0
    ma, mb = _KUBE_VERSION.match(a), _KUBE_VERSION.match(b)
    if not ma and not mb:
        return (b > a) - (b < a)
    if not ma:
        return -1
    if not mb:
        return 1
    ta, tb = _TYPE_RANK[ma.group(2)], _TYPE_RANK[mb.group(2)]
    if ta != tb:
        return ta - tb
    if int(ma.group(1)) != int(mb.group(1)):
        return int(ma.group(1)) - int(mb.group(1))
    return int(ma.group(3) or 0) - int(mb.group(3) or 0)


def sort_versions(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        i = 0
        while i < len(out) and compare_versions(out[i], n) > 0:
            i += 1
        out.insert(i, n)
    return out


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """apiserver pkg/endpoints/discovery/storageversionhash.go."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


# --- conditions ---------------------------------------------------------------------------------
def condition(crd: dict, typ: str) -> dict | None:
    for c in (crd.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None


def is_true(crd: dict, typ: str) -> bool:
    c = condition(crd, typ)
    return bool(c) and c.get("status") == "True"


def set_condition(crd: dict, typ: str, status: str, reason: str, message: str) -> None:
    """apihelpers.SetCRDCondition: the transition time changes only with the status."""
    conds = crd.setdefault("status", {}).setdefault("conditions", [])
    new = {
        "type": typ,
        "status": status,
        "lastTransitionTime": now_rfc3339(),
        "reason": reason,
        "message": message,
    }
    for i, c in enumerate(conds):
        if c.get("type") == typ:
            if c.get("status") == status:
                new["lastTransitionTime"] = c.get("lastTransitionTime") or new["lastTransitionTime"]
            conds[i] = new
            return
    conds.append(new)


# --- a definition's parts -----------------------------------------------------------------------
def spec_versions(crd: dict) -> list[dict]:
    return [v for v in (crd.get("spec") or {}).get("versions") or [] if isinstance(v, dict)]


def storage_version(crd: dict) -> str | None:
    return next((v.get("name") for v in spec_versions(crd) if v.get("storage")), None)


def served_versions(crd: dict) -> list[str]:
    return [v["name"] for v in spec_versions(crd) if v.get("served") and v.get("name")]


def names(crd: dict) -> dict:
    """The names it is served under: the accepted ones (upstream serves
    status.acceptedNames), or the requested ones before any were accepted."""
    accepted = (crd.get("status") or {}).get("acceptedNames") or {}
    return accepted if accepted.get("plural") else (crd.get("spec") or {}).get("names") or {}


def resource_for(crd: dict, version: str) -> Resource:
    """The custom resource a definition serves at `version`."""
    spec = crd.get("spec") or {}
    group, n = spec.get("group", ""), names(crd)
    ver = next((v for v in spec_versions(crd) if v.get("name") == version), {})
    storage = storage_version(crd) or version
    terminating = is_true(crd, "Terminating")
    subs = ("status",) if (ver.get("subresources") or {}).get("status") is not None else ()
    return Resource(
        group,
        version,
        n.get("plural", ""),
        n.get("kind", ""),
        spec.get("scope") == "Namespaced",
        tuple(n.get("shortNames") or ()),
        subs,
        key=f"{group}/{n.get('plural', '')}",
        verbs=TERMINATING_VERBS if terminating else CR_VERBS,
        categories=tuple(n.get("categories") or ()),
        tracks_generation=True,
        extra={
            "crd": crd["metadata"]["name"],
            "storage": storage,
            "singular": n.get("singular") or n.get("kind", "").lower(),
            "columns": ver.get("additionalPrinterColumns") or [AGE_COLUMN],
            "storage_hash": storage_version_hash(group, storage, n.get("kind", "")),
            "terminating": terminating,
        },
    )


# --- the strategy -------------------------------------------------------------------------------
def _default_spec(crd: dict) -> None:
    """v1 defaults.go: singular and listKind from the kind; conversion strategy None."""
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})


def prepare_create(crd: dict) -> None:
    """strategy.go PrepareForCreate and v1 defaults.go."""
    _default_spec(crd)
    crd["status"] = {
        "acceptedNames": {"plural": "", "kind": ""},
        "conditions": [],
        "storedVersions": [v for v in [storage_version(crd)] if v],
    }


def prepare_update(new: dict, old: dict) -> None:
    """strategy.go PrepareForUpdate: the status stays (the caller keeps it), the new storage
    version joins storedVersions."""
    _default_spec(new)
    status = copy.deepcopy(old.get("status") or {})
    stored = status.setdefault("storedVersions", [])
    sv = storage_version(new)
    if sv and sv not in stored:
        stored.append(sv)
    new["status"] = status


_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def validate(crd: dict) -> list[str]:
    """The part of validation/validation.go ValidateCustomResourceDefinition that decides
    where objects are stored and served (schemas are not looked at)."""
    errs = []
    spec, name = crd.get("spec") or {}, crd["metadata"].get("name", "")
    n = spec.get("names") or {}
    if name != f"{n.get('plural', '')}.{spec.get('group', '')}":
        errs.append(
            f'metadata.name: Invalid value: "{name}": must be spec.names.plural+"."+spec.group'
        )
    group = spec.get("group") or ""
    if not group:
        errs.append("spec.group: Required value")
    elif not _DNS1123_SUBDOMAIN.match(group) or len(group) > 253:
        errs.append(
            f'spec.group: Invalid value: "{group}": a lowercase RFC 1123 subdomain must '
            "consist of lower case alphanumeric characters, '-' or '.', and must start and "
            "end with an alphanumeric character (e.g. 'example.com', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    elif "." not in group:
        errs.append(
            f'spec.group: Invalid value: "{group}": should be a domain with at least one dot'
        )
    scope = spec.get("scope")
    if not scope:
        errs.append("spec.scope: Required value")
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(
            f'spec.scope: Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"'
        )
    versions = spec_versions(crd)
    seen = [v.get("name") for v in versions]
    if len(set(seen)) != len(seen):
        errs.append("spec.versions: Invalid value: ...: must contain unique version names")
    if sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(
            "spec.versions: Invalid value: ...: must have exactly one version marked as "
            "storage version"
        )
    for field in ("plural", "singular", "kind", "listKind"):
        if not n.get(field):
            errs.append(f"spec.names.{field}: Required value")
    return errs


def calculate_names(crd: dict, group_crds: list[dict]) -> tuple[dict, dict, dict]:
    """naming_controller.go calculateNamesAndConditions: (acceptedNames, NamesAccepted,
    Established). `group_crds` are the stored definitions of the group, this one included
    (upstream's lister does not leave it out either)."""
    resources, kinds = set(), set()
    for other in group_crds:
        acc = (other.get("status") or {}).get("acceptedNames") or {}
        resources |= {
            acc.get("plural", ""),
            acc.get("singular", ""),
            *(acc.get("shortNames") or []),
        }
        kinds |= {acc.get("kind", ""), acc.get("listKind", "")}
    requested = (crd.get("spec") or {}).get("names") or {}
    accepted = (crd.get("status") or {}).get("acceptedNames") or {}
    new = dict(accepted)
    cond = {"status": "Unknown", "reason": "", "message": ""}

    def fresh(req: str, acc: str, used: set) -> str | None:
        if req == acc or req not in used:
            return None
        return f'"{req}" is already in use'

    def fail(reason: str, message: str) -> None:
        cond.update(status="False", reason=reason, message=message)

    err = fresh(requested.get("plural", ""), accepted.get("plural", ""), resources)
    if err:
        fail("PluralConflict", err)
    else:
        new["plural"] = requested.get("plural", "")
    err = fresh(requested.get("singular", ""), accepted.get("singular", ""), resources)
    if err:
        fail("SingularConflict", err)
    else:
        new["singular"] = requested.get("singular", "")
    req_short, acc_short = requested.get("shortNames") or [], accepted.get("shortNames") or []
    if req_short != acc_short:
        short_errs = []
        for s in req_short:
            if s in acc_short or s in (accepted.get("plural"), accepted.get("singular")):
                continue
            err = fresh(s, "", resources)
            if err:
                short_errs.append(err)
        if short_errs:
            fail(
                "ShortNamesConflict",
                short_errs[0] if len(short_errs) == 1 else f"[{', '.join(short_errs)}]",
            )
        else:
            new["shortNames"] = list(req_short)
    for field, reason in (("kind", "KindConflict"), ("listKind", "ListKindConflict")):
        err = fresh(requested.get(field, ""), accepted.get(field, ""), kinds)
        if err:
            fail(reason, err)
        else:
            new[field] = requested.get(field, "")
    if requested.get("categories"):
        new["categories"] = list(requested["categories"])
    else:
        new.pop("categories", None)
    if not new.get("shortNames"):
        new.pop("shortNames", None)
    if cond["status"] == "Unknown":
        cond.update(status="True", reason="NoConflicts", message="no conflicts found")
    names_accepted = dict(type="NamesAccepted", **cond)
    established = condition(crd, "Established") or {
        "type": "Established",
        "status": "False",
        "reason": "NotAccepted",
        "message": "not all names are accepted",
    }
    if established.get("status") != "True" and cond["status"] == "True":
        established = {
            "type": "Established",
            "status": "False",
            "reason": "Installing",
            "message": "the initial names have been accepted",
        }
    return new, names_accepted, dict(established)


# --- the definitions a server knows -------------------------------------------------------------
class CustomResources:
    """Looks definitions up in etcd, so that every API server of a cluster agrees at once
    (upstream's servers each follow them through an informer, a moment behind): for each
    custom-resource request (routed by `<plural>.<group>`, as upstream), discovery and
    OpenAPI, a keys-only listing tells whether a definition was added, changed or removed
    since the whole list was last read (CRDs can be large: Calico's Installation is about
    a megabyte)."""

    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._cached: tuple[tuple, list[dict]] | None = None

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def definitions(self) -> list[dict]:
        keys, _ = self.store.etcd.range_prefix(CRD.etcd_prefix(), keys_only=True)
        fingerprint = (len(keys), max((mod for _, _, mod in keys), default=0))
        with self._lock:
            if self._cached and self._cached[0] == fingerprint:
                return self._cached[1]
        items = self.store.list(CRD, None)[0]
        with self._lock:
            self._cached = (fingerprint, items)
        return items

    def definition(self, name: str) -> dict | None:
        try:
            return self.store.get(CRD, None, name)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise

    def resolve(self, group: str, version: str, plural: str) -> Resource | None:
        """customresource_handler.go ServeHTTP: the definition `<plural>.<group>`, served at
        `version`, with its names accepted or established; else None (404)."""
        name = f"{plural}.{group}"
        crd = next((c for c in self.definitions() if c["metadata"]["name"] == name), None)
        if crd is None or version not in served_versions(crd):
            return None
        if not (is_true(crd, "NamesAccepted") or is_true(crd, "Established")):
            return None
        r = resource_for(crd, version)
        return r if r.plural == plural else None

    def served(self) -> list[Resource]:
        """Every established definition's resource at every served version (discovery)."""
        out = []
        for crd in self.definitions():
            if is_true(crd, "Established"):
                out += [resource_for(crd, v) for v in served_versions(crd)]
        return out

    def stored(self) -> list[Resource]:
        """One resource per definition, at its storage version: to reach every object."""
        return [
            resource_for(crd, storage_version(crd))
            for crd in self.definitions()
            if storage_version(crd) and names(crd).get("plural")
        ]

    def group_versions(self) -> dict[str, list[str]]:
        """Groups with an established definition serving a version, their versions in
        upstream's preferred-first order."""
        out: dict[str, list[str]] = {}
        for crd in self.definitions():
            if not is_true(crd, "Established"):
                continue
            vs = out.setdefault(crd["spec"]["group"], [])
            vs += [v for v in served_versions(crd) if v not in vs]
        return {g: sort_versions(vs) for g, vs in sorted(out.items()) if vs}
