"""`kubeadm certs check-expiration` (table, -o json, -o yaml) and `kubeadm certs renew`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os

import yaml

from .. import kubeconfig, pki
from ..paths import KUBERNETES_DIR, host
from . import certs
from .common import admin_client, log, read_cluster_config
from .config import default_cluster

LEAVES = [
    ("admin.conf", "ca", True),
    ("apiserver", "ca", False),
    ("apiserver-etcd-client", "etcd-ca", False),
    ("apiserver-kubelet-client", "ca", False),
    ("controller-manager.conf", "ca", True),
    ("etcd-healthcheck-client", "etcd-ca", False),
    ("etcd-peer", "etcd-ca", False),
    ("etcd-server", "etcd-ca", False),
    ("front-proxy-client", "front-proxy-ca", False),
    ("scheduler.conf", "ca", True),
    ("super-admin.conf", "ca", True),
]
CA_FILES = {"ca": "ca", "etcd-ca": "etcd/ca", "front-proxy-ca": "front-proxy-ca"}


def _leaf_path(name: str, pki_dir: str) -> str:
    if name.startswith("etcd-"):
        return f"{pki_dir}/etcd/{name[5:]}.crt"
    return f"{pki_dir}/{name}.crt"


def _load(name: str, is_conf: bool, pki_dir: str):
    try:
        if is_conf:
            creds = kubeconfig.Credentials.from_file(f"{KUBERNETES_DIR}/{name}")
            return pki.load_cert(creds.cert_pem) if creds.cert_pem else None
        with open(host(_leaf_path(name, pki_dir)), "rb") as f:
            return pki.load_cert(f.read())
    except (OSError, ValueError, KeyError, StopIteration):
        return None


def _residual(seconds: float) -> str:
    if seconds <= 0:
        return "<invalid>"
    days = int(seconds // 86400)
    if days >= 365:
        return f"{days // 365}y"
    if days >= 1:
        return f"{days}d"
    return f"{int(seconds // 3600)}h"


def _external(ca: str, pki_dir: str) -> bool:
    return not os.path.exists(host(f"{pki_dir}/{CA_FILES[ca]}.key"))


def check_expiration(output: str, cert_dir: str | None, config: str | None) -> int:
    cluster: dict = {}
    if not config:
        log_fn = log if output in ("", "text") else (lambda *_: None)
        log_fn("[check-expiration] Reading configuration from the cluster...")
        log_fn(
            "[check-expiration] FYI: You can look at this config file with 'kubectl -n "
            "kube-system get cm kubeadm-config -o yaml'"
        )
        try:
            cluster = read_cluster_config(admin_client(timeout=5, retry_for=0))
        except Exception as e:
            log_fn(
                f"[check-expiration] Error reading configuration from the Cluster. Falling "
                f"back to default configuration: {e}"
            )
    default_cluster(cluster)
    pki_dir = cert_dir or cluster["certificatesDir"]
    now = dt.datetime.now(dt.UTC)
    local_etcd = "local" in cluster.get("etcd", {})
    rows, ca_rows = [], []
    for name, ca, is_conf in LEAVES:
        if ca == "etcd-ca" and not local_etcd and name != "apiserver-etcd-client":
            continue
        if name == "apiserver-etcd-client" and not local_etcd:
            continue
        cert = _load(name, is_conf, pki_dir)
        rows.append((name, cert, ca))
    for ca, path in CA_FILES.items():
        if ca == "etcd-ca" and not local_etcd:
            continue
        try:
            with open(host(f"{pki_dir}/{path}.crt"), "rb") as f:
                ca_rows.append((ca, pki.load_cert(f.read())))
        except OSError:
            ca_rows.append((ca, None))

    def entry(name, cert, ca_name):
        e = {
            "name": name,
            "externallyManaged": _external(ca_name or name, pki_dir)
            if (ca_name or name) in CA_FILES
            else False,
            "missing": cert is None,
        }
        if cert is not None:
            e["expirationDate"] = pki.not_after(cert).strftime("%Y-%m-%dT%H:%M:%SZ")
            e["residualTime"] = int((pki.not_after(cert) - now).total_seconds())
        else:
            e["expirationDate"], e["residualTime"] = None, 0
        if ca_name:
            e["caName"] = ca_name
        return e

    if output in ("json", "yaml"):
        doc = {
            "kind": "CertificateExpirationInfo",
            "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
            "certificates": [entry(n, c, ca) for n, c, ca in rows],
            "certificateAuthorities": [entry(n, c, None) for n, c in ca_rows],
        }
        print(
            json.dumps(doc, indent=4) if output == "json" else yaml.safe_dump(doc, sort_keys=False)
        )
        return 0
    fmt = "{:<26} {:<24} {:<15} {:<23} {:<8}"
    print()
    print(
        fmt.format(
            "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"
        )
    )
    for name, cert, ca in rows:
        if cert is None:
            print(fmt.format(name, "", "", "", "!MISSING!"))
            continue
        exp = pki.not_after(cert)
        print(
            fmt.format(
                name,
                exp.strftime("%b %d, %Y %H:%M UTC"),
                _residual((exp - now).total_seconds()),
                ca,
                "yes" if _external(ca, pki_dir) else "no",
            )
        )
    print()
    fmt2 = "{:<23} {:<24} {:<15} {:<8}"
    print(fmt2.format("CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"))
    for name, cert in ca_rows:
        if cert is None:
            print(fmt2.format(name, "", "", "!MISSING!"))
            continue
        exp = pki.not_after(cert)
        print(
            fmt2.format(
                name,
                exp.strftime("%b %d, %Y %H:%M UTC"),
                _residual((exp - now).total_seconds()),
                "yes" if _external(name, pki_dir) else "no",
            )
        )
    return 0


def renew_all(cert_dir: str | None) -> int:
    """Re-sign every leaf and kubeconfig certificate with the same subject and SANs."""
    cluster: dict = {}
    with contextlib.suppress(Exception):
        cluster = read_cluster_config(admin_client(timeout=5, retry_for=0))
    default_cluster(cluster)
    pki_dir = cert_dir or cluster["certificatesDir"]
    log("[renew] Reading configuration from the cluster...")
    for name, _, is_conf in LEAVES:
        if not renew(name, pki_dir):
            continue
        if is_conf:
            who = name.split(".")[0].replace("-", " ")
            log(f"certificate embedded in the kubeconfig file for the {who} to use renewed")
        else:
            log(f"certificate for {name} renewed")
    log("")
    log(
        "Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, "
        "kube-scheduler and etcd, so that they can use the new certificates."
    )
    return 0


def renew(name: str, pki_dir: str) -> bool:
    """Re-sign one leaf certificate (or a kubeconfig's) with a new key, the same subject, SANs
    and usages, by its CA; False when it does not exist."""
    ca, is_conf = next((ca, conf) for n, ca, conf in LEAVES if n == name)
    old = _load(name, is_conf, pki_dir)
    if old is None:
        return False
    ca_cert, ca_key = pki.read_pair(f"{pki_dir}/{CA_FILES[ca]}")
    cn, orgs = pki.subject_of(old)
    dns, ips = pki.sans_of(old)
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        eku = old.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = []
    spec = pki.CertSpec(
        cn,
        tuple(orgs),
        server=ExtendedKeyUsageOID.SERVER_AUTH in eku,
        client=ExtendedKeyUsageOID.CLIENT_AUTH in eku,
        dns=dns,
        ips=ips,
    )
    cert, key = pki.sign(spec, ca_cert, ca_key)
    if is_conf:
        path = f"{KUBERNETES_DIR}/{name}"
        kc = kubeconfig.load(path)
        import base64

        kc["users"][0]["user"]["client-certificate-data"] = base64.b64encode(
            pki.cert_pem(cert)
        ).decode()
        kc["users"][0]["user"]["client-key-data"] = base64.b64encode(pki.key_pem(key)).decode()
        kubeconfig.write(path, kc)
    else:
        pki.write_pair(_leaf_path(name, pki_dir)[:-4], cert, key)
    return True


__all__ = ["certs", "check_expiration", "renew_all"]
