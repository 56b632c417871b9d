"""Authentication (client certificates, bootstrap tokens, anonymous) and authorization
(system:masters, a node authorizer and RBAC evaluated from the stored roles and bindings)."""

from __future__ import annotations

# ruff: noqa: SIM102 (nested checks read like the RBAC rules they mirror)
import base64
import datetime as dt
import re
import threading
import time
from dataclasses import dataclass, field

from . import errors
from .resources import BY_GV_PLURAL

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


@dataclass
class User:
    name: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""


ANONYMOUS = User("system:anonymous", ["system:unauthenticated"])


@dataclass
class Attributes:
    verb: str
    resource_request: bool
    path: str = ""
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def user_from_cert(peercert: dict | None) -> User | None:
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return User(cn, [*orgs, "system:authenticated"])


def _b64(data: dict, key: str) -> str:
    try:
        return base64.b64decode(data.get(key, "")).decode()
    except ValueError:
        return ""


def user_from_bootstrap_token(token: str, secrets_get) -> User | None:
    """Check `id.secret` against Secret kube-system/bootstrap-token-<id> as upstream does."""
    m = TOKEN_RE.match(token)
    if not m:
        return None
    tid, tsecret = m.groups()
    secret = secrets_get(f"bootstrap-token-{tid}")
    if not secret or secret.get("type") != "bootstrap.kubernetes.io/token":
        return None
    data = secret.get("data") or {}
    if _b64(data, "token-secret") != tsecret or _b64(data, "token-id") != tid:
        return None
    if _b64(data, "usage-bootstrap-authentication") != "true":
        return None
    exp = _b64(data, "expiration")
    if exp:
        try:
            when = dt.datetime.fromisoformat(exp.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when <= dt.datetime.now(dt.UTC):
            return None
    if secret.get("metadata", {}).get("deletionTimestamp"):
        return None
    groups = ["system:bootstrappers"]
    groups += [g for g in _b64(data, "auth-extra-groups").split(",") if g]
    return User(f"system:bootstrap:{tid}", [*groups, "system:authenticated"])


# --- RBAC ------------------------------------------------------------------------------------


def _rule_matches(rule: dict, a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == a.path or (url.endswith("*") and a.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    want = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    resources = rule.get("resources") or []
    ok = any(
        r == "*" or r == want or (a.subresource and r == f"*/{a.subresource}") for r in resources
    )
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _subject_matches(subject: dict, user: User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


NODE_RESOURCES = {
    ("", "nodes"),
    ("", "pods"),
    ("", "events"),
    ("coordination.k8s.io", "leases"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("events.k8s.io", "events"),
}
NODE_READ = {
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("", "endpoints"),
    ("", "namespaces"),
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("storage.k8s.io", "csidrivers"),
    ("node.k8s.io", "runtimeclasses"),
}


class Authorizer:
    """Allow system:masters; nodes via a node authorizer; everything else via RBAC."""

    def __init__(self, list_objects, ttl: float = 1.0):
        self._list = list_objects  # (plural, namespace|None) -> list[dict]
        self._cache: dict = {}
        self._generation = 0
        self._lock = threading.Lock()
        self.ttl = ttl

    def _objects(self, plural: str) -> list[dict]:
        with self._lock:
            hit = self._cache.get(plural)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            generation = self._generation
        res = BY_GV_PLURAL[("rbac.authorization.k8s.io/v1", plural)]
        try:
            items = self._list(res, None)
        except Exception:
            # Upstream's RBAC authorizer reads informer caches (listers, wired in
            # pkg/kubeapiserver/authorizer/config.go, v1.30-v1.33), never etcd: while etcd
            # cannot answer (a leader moving, a member restarting) it goes on deciding from
            # what it last saw. Only a cache never filled makes the request fail.
            if hit is None:
                raise
            return hit[1]
        with self._lock:
            # A write that invalidated the cache while this list was being read makes the
            # list stale: use it for this request, but do not keep it.
            if generation == self._generation:
                self._cache[plural] = (time.monotonic(), items)
        return items

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache.clear()

    def _role_rules(self, ref: dict, namespace: str) -> list[dict]:
        if ref.get("kind") == "ClusterRole":
            for r in self._objects("clusterroles"):
                if r["metadata"]["name"] == ref.get("name"):
                    return r.get("rules") or []
        else:
            for r in self._objects("roles"):
                md = r["metadata"]
                if md["name"] == ref.get("name") and md.get("namespace") == namespace:
                    return r.get("rules") or []
        return []

    def allowed(self, user: User, a: Attributes) -> bool:
        if "system:masters" in user.groups:
            return True
        if "system:nodes" in user.groups and user.name.startswith("system:node:"):
            key = (a.group, a.resource)
            if a.resource_request and (
                key in NODE_RESOURCES or (key in NODE_READ and a.verb in ("get", "list", "watch"))
            ):
                return True
        for b in self._objects("clusterrolebindings"):
            if any(_subject_matches(s, user, "") for s in b.get("subjects") or []):
                if any(_rule_matches(r, a) for r in self._role_rules(b.get("roleRef", {}), "")):
                    return True
        if a.namespace:
            for b in self._objects("rolebindings"):
                if b["metadata"].get("namespace") != a.namespace:
                    continue
                if any(_subject_matches(s, user, a.namespace) for s in b.get("subjects") or []):
                    if any(
                        _rule_matches(r, a)
                        for r in self._role_rules(b.get("roleRef", {}), a.namespace)
                    ):
                        return True
        return False

    def check(self, user: User, a: Attributes) -> None:
        if self.allowed(user, a):
            return
        if not a.resource_request:
            raise errors.StatusError(
                403, "Forbidden", f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"'
            )
        raise errors.forbidden(
            user.name,
            a.verb,
            a.resource,
            a.group,
            a.namespace or None,
            a.name or None,
            a.subresource or None,
        )


def _role(name: str, rules: list[dict]) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    }


def _binding(name: str, role: str, subjects: list[tuple[str, str]]) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": k, "name": n} for k, n in subjects
        ],
    }


PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
CSR = "certificatesigningrequests"
DEFAULT_CLUSTER_ROLES = [
    _role(
        "cluster-admin",
        [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    ),
    _role(
        "system:discovery",
        [
            {
                "nonResourceURLs": [
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                "verbs": ["get"],
            }
        ],
    ),
    _role("system:public-info-viewer", [{"nonResourceURLs": PUBLIC_URLS, "verbs": ["get"]}]),
    _role(
        "system:basic-user",
        [
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            },
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["selfsubjectreviews"],
                "verbs": ["create"],
            },
        ],
    ),
    _role(
        "system:node-bootstrapper",
        [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": [CSR],
                "verbs": ["create", "get", "list", "watch"],
            }
        ],
    ),
    _role(
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": [f"{CSR}/nodeclient"],
                "verbs": ["create"],
            }
        ],
    ),
    _role(
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": [f"{CSR}/selfnodeclient"],
                "verbs": ["create"],
            }
        ],
    ),
    # Upstream grants these narrower rules; the stand-in controllers use one identity each.
    _role(
        "system:kube-controller-manager", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    ),
    _role("system:kube-scheduler", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    _role(
        "system:node-proxier",
        [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "nodes"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    ),
]
DEFAULT_CLUSTER_ROLE_BINDINGS = [
    _binding("cluster-admin", "cluster-admin", [("Group", "system:masters")]),
    _binding("system:discovery", "system:discovery", [("Group", "system:authenticated")]),
    _binding("system:basic-user", "system:basic-user", [("Group", "system:authenticated")]),
    _binding(
        "system:public-info-viewer",
        "system:public-info-viewer",
        [("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
    ),
    _binding(
        "system:kube-controller-manager",
        "system:kube-controller-manager",
        [("User", "system:kube-controller-manager")],
    ),
    _binding("system:kube-scheduler", "system:kube-scheduler", [("User", "system:kube-scheduler")]),
]
