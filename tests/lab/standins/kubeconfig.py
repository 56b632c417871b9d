"""kubeconfig files: write them like kubeadm, read them like client-go (the parts we need)."""

from __future__ import annotations

import base64
import os

import yaml

from . import pki
from .paths import host


def build(
    cluster: str,
    server: str,
    ca_pem: bytes,
    user: str,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    token: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> dict:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    creds: dict = {}
    if cert_pem is not None:
        creds = {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}
    elif cert_file:
        creds = {"client-certificate": cert_file, "client-key": key_file}
    elif token:
        creds = {"token": token}
    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"certificate-authority-data": b64(ca_pem), "server": server},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [{"name": user, "user": creds}],
    }


def write(path: str, config: dict) -> None:
    pki.write_file(path, yaml.safe_dump(config, sort_keys=False).encode(), 0o600)


def load(path: str) -> dict:
    with open(host(path)) as f:
        return yaml.safe_load(f)


class Credentials:
    """The current context of a kubeconfig, resolved to bytes."""

    def __init__(self, config: dict, base_dir: str = "/"):
        ctx_name = config.get("current-context")
        ctx = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
        user = next(
            (u["user"] for u in config.get("users", []) if u["name"] == ctx.get("user")), {}
        )
        self.server: str = cluster["server"]
        self.ca_pem = self._bytes(cluster, "certificate-authority", base_dir)
        self.insecure = bool(cluster.get("insecure-skip-tls-verify"))
        self.cert_pem = self._bytes(user, "client-certificate", base_dir)
        self.key_pem = self._bytes(user, "client-key", base_dir)
        self.token: str | None = user.get("token")

    @staticmethod
    def _bytes(section: dict, name: str, base_dir: str) -> bytes | None:
        if section.get(name + "-data"):
            return base64.b64decode(section[name + "-data"])
        if section.get(name):
            path = section[name]
            if not path.startswith("/"):
                path = os.path.join(base_dir, path)
            with open(host(path), "rb") as f:
                return f.read()
        return None

    @classmethod
    def from_file(cls, path: str) -> Credentials:
        return cls(load(path), os.path.dirname(path))
