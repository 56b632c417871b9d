"""Kubelet client credentials: from kubelet.conf, or by TLS bootstrap (a CSR signed by the
controller-manager after auto-approval), stored in /var/lib/kubelet/pki like upstream."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .. import kubeconfig, pki
from ..client import ApiError, Client
from ..kubeconfig import Credentials
from ..paths import KUBELET_PKI, host
from . import log

CURRENT = f"{KUBELET_PKI}/kubelet-client-current.pem"


def _store_pair(cert_pem: bytes, key_pem: bytes) -> str:
    os.makedirs(host(KUBELET_PKI), exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    name = f"kubelet-client-{stamp}.pem"
    pki.write_file(f"{KUBELET_PKI}/{name}", cert_pem + key_pem, 0o600)
    link = host(CURRENT)
    tmp = link + ".tmp"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(host(f"{KUBELET_PKI}/{name}"), tmp)
    os.replace(tmp, link)
    return CURRENT


def seed_from_kubeconfig(kubeconfig_path: str) -> None:
    """kubeadm init writes kubelet.conf with embedded credentials; the kubelet copies them to
    its certificate store so that kubeadm's kubelet-finalize phase can point at the file."""
    if os.path.exists(host(CURRENT)):
        return
    try:
        creds = Credentials.from_file(kubeconfig_path)
    except (OSError, KeyError, StopIteration):
        return
    cfg = kubeconfig.load(kubeconfig_path)
    user = cfg["users"][0]["user"]
    if creds.cert_pem and creds.key_pem and "client-certificate-data" in user:
        _store_pair(creds.cert_pem, creds.key_pem)


def tls_bootstrap(bootstrap_path: str, kubeconfig_path: str, node_name: str, stop) -> bool:
    creds = Credentials.from_file(bootstrap_path)
    client = Client(
        creds.server,
        creds.ca_pem,
        token=creds.token,
        cert_pem=creds.cert_pem,
        key_pem=creds.key_pem,
    )
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {
            "request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }
    created = client.create(body)
    name = created["metadata"]["name"]
    log.info(f"certificate signing request {name} is submitted for node {node_name}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not stop():
        try:
            got = client.get("CertificateSigningRequest", name)
        except (ApiError, OSError) as e:
            log.warn(f"waiting for CSR {name}: {e}")
            time.sleep(1)
            continue
        conds = {c["type"] for c in got.get("status", {}).get("conditions") or []}
        if "Denied" in conds or "Failed" in conds:
            log.error(f"certificate signing request {name} was {','.join(conds)}")
            return False
        cert_b64 = got.get("status", {}).get("certificate")
        if cert_b64:
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            path = _store_pair(base64.b64decode(cert_b64), key_pem)
            kubeconfig.write(
                kubeconfig_path,
                kubeconfig.build(
                    "default-cluster",
                    creds.server,
                    creds.ca_pem,
                    "default-auth",
                    cert_file=path,
                    key_file=path,
                ),
            )
            cfg = kubeconfig.load(kubeconfig_path)
            cfg["contexts"][0]["name"] = "default-context"
            cfg["contexts"][0]["context"]["namespace"] = "default"
            cfg["current-context"] = "default-context"
            kubeconfig.write(kubeconfig_path, cfg)
            log.info(f"TLS bootstrap done: client certificate stored at {path}")
            return True
        time.sleep(0.5)
    return False
