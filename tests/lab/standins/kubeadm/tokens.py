"""Bootstrap tokens as Secrets in kube-system, and the RBAC kubeadm sets up around them."""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets as rnd

from ..client import Client
from .config import DEFAULT_TOKEN_GROUPS, parse_duration
from .errors import KubeadmError

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate() -> str:
    pick = lambda n: "".join(rnd.choice(ALPHABET) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def parse(token: str) -> tuple[str, str]:
    m = TOKEN_RE.match(token or "")
    if not m:
        raise KubeadmError(
            f'the bootstrap token "{token}" was not of the form '
            '"^([a-z0-9]{6})\\.([a-z0-9]{16})$"'
        )
    return m.group(1), m.group(2)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def secret_for(
    token: str,
    ttl: str | None = "24h0m0s",
    usages=("signing", "authentication"),
    groups=tuple(DEFAULT_TOKEN_GROUPS),
    description: str = "",
) -> dict:
    tid, tsecret = parse(token)
    data = {"token-id": tid, "token-secret": tsecret}
    seconds = parse_duration(ttl, 0)
    if seconds > 0:
        exp = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        data["expiration"] = exp.strftime("%Y-%m-%dT%H:%M:%SZ")
    for u in usages or ():
        data[f"usage-bootstrap-{u}"] = "true"
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    if description:
        data["description"] = description
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"bootstrap-token-{tid}", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": {k: _b64(v) for k, v in data.items()},
    }


def create(client: Client, token: str, **kw) -> dict:
    return client.create_or_update(secret_for(token, **kw))


def decode_secret(secret: dict) -> dict:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _role(kind: str, name: str, rules: list[dict], ns: str | None = None) -> dict:
    md = {"name": name}
    if ns:
        md["namespace"] = ns
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": md,
        "rules": rules,
    }


def _binding(
    kind: str,
    name: str,
    role_kind: str,
    role: str,
    subjects: list[tuple[str, str]],
    ns: str | None = None,
) -> dict:
    md = {"name": name}
    if ns:
        md["namespace"] = ns
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": md,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": k, "name": n} for k, n in subjects
        ],
    }


BOOTSTRAPPERS = DEFAULT_TOKEN_GROUPS[0]


def bootstrap_rbac() -> list[dict]:
    """What `kubeadm init phase bootstrap-token` creates besides the tokens."""
    return [
        _role(
            "ClusterRole",
            "kubeadm:get-nodes",
            [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
        ),
        _binding(
            "ClusterRoleBinding",
            "kubeadm:get-nodes",
            "ClusterRole",
            "kubeadm:get-nodes",
            [("Group", BOOTSTRAPPERS)],
        ),
        _binding(
            "ClusterRoleBinding",
            "kubeadm:kubelet-bootstrap",
            "ClusterRole",
            "system:node-bootstrapper",
            [("Group", BOOTSTRAPPERS)],
        ),
        _binding(
            "ClusterRoleBinding",
            "kubeadm:node-autoapprove-bootstrap",
            "ClusterRole",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            [("Group", BOOTSTRAPPERS)],
        ),
        _binding(
            "ClusterRoleBinding",
            "kubeadm:node-autoapprove-certificate-rotation",
            "ClusterRole",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [("Group", "system:nodes")],
        ),
        _role(
            "Role",
            "kubeadm:bootstrap-signer-clusterinfo",
            [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["cluster-info"],
                    "verbs": ["get"],
                }
            ],
            "kube-public",
        ),
        _binding(
            "RoleBinding",
            "kubeadm:bootstrap-signer-clusterinfo",
            "Role",
            "kubeadm:bootstrap-signer-clusterinfo",
            [("User", "system:anonymous")],
            "kube-public",
        ),
    ]


def config_rbac() -> list[dict]:
    """Roles that let joining nodes read kubeadm-config and kubelet-config."""
    out = []
    for name, cm in (
        ("kubeadm:nodes-kubeadm-config", "kubeadm-config"),
        ("kubeadm:kubelet-config", "kubelet-config"),
    ):
        out.append(
            _role(
                "Role",
                name,
                [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": [cm],
                        "verbs": ["get"],
                    }
                ],
                "kube-system",
            )
        )
        out.append(
            _binding(
                "RoleBinding",
                name,
                "Role",
                name,
                [("Group", BOOTSTRAPPERS), ("Group", "system:nodes")],
                "kube-system",
            )
        )
    return out


def cluster_admins_binding() -> dict:
    return _binding(
        "ClusterRoleBinding",
        "kubeadm:cluster-admins",
        "ClusterRole",
        "cluster-admin",
        [("Group", "kubeadm:cluster-admins")],
    )
