"""The resource types this API server serves, with what discovery and kubectl need to know."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    key: str | None = None  # etcd key segment when upstream's differs from the plural
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    categories: tuple[str, ...] = ()
    tracks_generation: bool = False
    stored: bool = True
    # Custom resources (apiserver/crds.py) carry their definition's name ("crd"), storage
    # version, singular name, printer columns, storage version hash and terminating state.
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.extra.get("singular") or self.kind.lower()

    @property
    def custom(self) -> bool:
        """Served for a CustomResourceDefinition (not one of RESOURCES)."""
        return bool(self.extra.get("crd"))

    def etcd_prefix(self) -> str:
        return f"/registry/{self.key or self.plural}/"


R = Resource
RESOURCES: list[Resource] = [
    R("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize")),
    R("", "v1", "nodes", "Node", False, ("no",), ("status",), key="minions"),
    R(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ("po",),
        ("status", "eviction", "binding"),
        categories=("all",),
    ),
    R("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    R("", "v1", "secrets", "Secret", True),
    R("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    R(
        "",
        "v1",
        "services",
        "Service",
        True,
        ("svc",),
        ("status",),
        key="services/specs",
        categories=("all",),
    ),
    R("", "v1", "endpoints", "Endpoints", True, ("ep",), key="services/endpoints"),
    R("", "v1", "events", "Event", True, ("ev",)),
    R("", "v1", "bindings", "Binding", True, verbs=("create",), stored=False),
    R(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        ("status", "scale"),
        categories=("all",),
        tracks_generation=True,
    ),
    R(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        ("rs",),
        ("status", "scale"),
        categories=("all",),
        tracks_generation=True,
    ),
    R(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        True,
        ("ds",),
        ("status",),
        categories=("all",),
        tracks_generation=True,
    ),
    R(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        True,
        ("sts",),
        ("status", "scale"),
        categories=("all",),
        tracks_generation=True,
    ),
    R("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    R(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        ("status",),
        tracks_generation=True,
    ),
    R("coordination.k8s.io", "v1", "leases", "Lease", True),
    R(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        False,
        ("csr",),
        ("status", "approval"),
    ),
    R("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    R("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    R("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    R("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    R("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    R(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("status",),
        key="apiextensions.k8s.io/customresourcedefinitions",
        categories=("api-extensions",),
        tracks_generation=True,
    ),
    R(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        False,
        verbs=("create",),
        stored=False,
    ),
    R(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=("create",),
        stored=False,
    ),
    R(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        False,
        verbs=("create",),
        stored=False,
    ),
]

BY_GV_PLURAL = {(r.group_version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.group, r.kind): r for r in RESOURCES}

# Subresource kinds as upstream discovery reports them.
SUBRESOURCE_KIND = {
    "status": None,
    "eviction": ("policy", "v1", "Eviction"),
    "binding": ("", "v1", "Binding"),
    "scale": ("autoscaling", "v1", "Scale"),
    "approval": None,
    "finalize": None,
}
SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "eviction": ["create"],
    "binding": ["create"],
    "scale": ["get", "patch", "update"],
    "approval": ["get", "patch", "update"],
    "finalize": ["update"],
}


def group_versions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            out.setdefault(r.group, [])
            if r.version not in out[r.group]:
                out[r.group].append(r.version)
    return out


def api_resources(r: Resource) -> list[dict]:
    """The APIResourceList entries for one resource: itself, then its subresources."""
    entry = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
    }
    if r.short:
        entry["shortNames"] = list(r.short)
    if r.categories:
        entry["categories"] = list(r.categories)
    if r.extra.get("storage_hash"):
        entry["storageVersionHash"] = r.extra["storage_hash"]
    items = [entry]
    for sub in r.subresources:
        k = SUBRESOURCE_KIND.get(sub)
        sub_entry = {
            "name": f"{r.plural}/{sub}",
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": k[2] if k else r.kind,
            "verbs": SUBRESOURCE_VERBS[sub],
        }
        if k:
            sub_entry["group"], sub_entry["version"] = k[0], k[1]
        items.append(sub_entry)
    return items


def resource_list(group_version: str, custom: list[Resource] | tuple = ()) -> dict | None:
    """/api/v1 or /apis/<group>/<version>: the built-in resources, then `custom` ones (the
    served custom resources, see apiserver/crds.py) of that group-version."""
    items = []
    for r in [*RESOURCES, *custom]:
        if r.group_version == group_version:
            items += api_resources(r)
    if not items:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": items,
    }
