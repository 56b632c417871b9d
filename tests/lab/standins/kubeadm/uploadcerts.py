"""`kubeadm init phase upload-certs`: control-plane CA material encrypted with AES-256-GCM
under the certificate key, in Secret kube-system/kubeadm-certs, owned by a bootstrap token
whose expiry (2 hours) removes both (token cleaner, then garbage collector)."""

from __future__ import annotations

import base64
import os
import secrets as rnd

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import pki
from ..client import Client, NotFound
from ..paths import host
from . import tokens
from .errors import KubeadmError

SECRET = "kubeadm-certs"
CERT_TOKEN_TTL = "2h0m0s"


def new_key() -> str:
    return rnd.token_hex(32)


def encrypt(data: bytes, key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, data, None)


def decrypt(data: bytes, key: bytes) -> bytes:
    if len(data) < 12:
        raise KubeadmError("size of data is less than the nonce")
    try:
        return AESGCM(key).decrypt(data[:12], data[12:], None)
    except InvalidTag:
        raise KubeadmError("cipher: message authentication failed") from None


def files_to_transfer(cluster: dict) -> dict[str, str]:
    p = cluster["certificatesDir"]
    out = {
        n: f"{p}/{n}"
        for n in (
            "ca.crt",
            "ca.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            "sa.pub",
            "sa.key",
        )
    }
    ext = cluster.get("etcd", {}).get("external")
    if ext:
        out.update(
            {
                "external-etcd-ca.crt": ext.get("caFile", ""),
                "external-etcd.crt": ext.get("certFile", ""),
                "external-etcd.key": ext.get("keyFile", ""),
            }
        )
    else:
        out.update({"etcd/ca.crt": f"{p}/etcd/ca.crt", "etcd/ca.key": f"{p}/etcd/ca.key"})
    return out


def _decode_key(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key)
    except ValueError as e:
        raise KubeadmError(f"error decoding certificate key: encoding/hex: {e}") from e
    if len(raw) not in (16, 24, 32):
        raise KubeadmError(f"crypto/aes: invalid key size {len(raw)}")
    return raw


def upload(client: Client, cluster: dict, key: str, log) -> None:
    log(
        f'[upload-certs] Storing the certificates in Secret "{SECRET}" in the "kube-system" '
        "Namespace"
    )
    raw_key = _decode_key(key)
    token = tokens.generate()
    owner = client.create_or_update(
        tokens.secret_for(
            token,
            ttl=CERT_TOKEN_TTL,
            usages=(),
            groups=(),
            description="Proxy for managing TTL for the kubeadm-certs secret",
        )
    )
    data = {}
    for name, path in files_to_transfer(cluster).items():
        try:
            with open(host(path), "rb") as f:
                data[name.replace("/", "-")] = base64.b64encode(encrypt(f.read(), raw_key)).decode()
        except FileNotFoundError:
            data[name.replace("/", "-")] = ""
    client.create_or_update(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": SECRET,
                "namespace": "kube-system",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": data,
        }
    )
    client.create_or_update(
        tokens._role(
            "Role",
            "kubeadm:kubeadm-certs",
            [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [SECRET],
                    "verbs": ["get"],
                }
            ],
            "kube-system",
        )
    )
    client.create_or_update(
        tokens._binding(
            "RoleBinding",
            "kubeadm:kubeadm-certs",
            "Role",
            "kubeadm:kubeadm-certs",
            [("Group", tokens.BOOTSTRAPPERS)],
            "kube-system",
        )
    )


def download(client: Client, cluster: dict, key: str, log) -> None:
    log(
        f'[download-certs] Downloading the certificates in Secret "{SECRET}" in the '
        '"kube-system" Namespace'
    )
    raw_key = _decode_key(key)
    try:
        secret = client.get("Secret", SECRET, "kube-system")
    except NotFound:
        raise KubeadmError(
            f'error downloading the secret: Secret "{SECRET}" was not found in the "kube-system" '
            "Namespace. This Secret might have expired. Please, run `kubeadm init phase "
            "upload-certs --upload-certs` on a control plane to generate a new one"
        ) from None
    decoded = {}
    try:
        for name, value in (secret.get("data") or {}).items():
            blob = base64.b64decode(value)
            decoded[name] = decrypt(blob, raw_key) if blob else b""
    except KubeadmError as e:
        raise KubeadmError(f"error decoding secret data with provided key: {e}") from None
    for name, path in files_to_transfer(cluster).items():
        data = decoded.get(name.replace("/", "-"))
        if data is None:
            raise KubeadmError(
                f"the Secret does not include the required certificate or key - "
                f"name: {name}, path: {path}"
            )
        if data:
            mode = 0o600 if name.endswith(".key") else 0o644
            pki.write_file(path, data, mode)
