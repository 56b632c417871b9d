"""A cluster file naming the lab's machines as hosts (what `--vagrant` would find), so that
commands run without two Vagrant calls each; `--vagrant` still works beside it (its hosts
replace the file's, with the same addresses, users and keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.lab import etcd_release
from tests.lab.lab import Lab

# The shared HA cluster starts here, so that the upgrade module can take it one minor on
# (and see a skip of a minor refused) from a repository per minor, as pkgs.k8s.io has.
HA_VERSION = "1.31.5"
UPGRADED_VERSION = "1.32.3"


def per_minor(url: str) -> str:
    """The lab repository's URL in pkgs.k8s.io's layout: one repository per minor."""
    return f"{url}core:/stable:/v{{minor}}/deb/"


def lab_spec(lab: Lab, url: str, name: str = "lab", version: str | None = None) -> dict[str, Any]:
    hosts = []
    for machine in lab.machines:
        host: dict[str, Any] = {
            "name": machine.name,
            "address": machine.ssh_host,
            "roles": list(machine.roles),
            "ssh": {
                "user": machine.ssh_user,
                "port": machine.ssh_port,
                "key": str(machine.ssh_key),
            },
        }
        if machine.address != machine.ssh_host:
            host["nodeIP"] = machine.address
        hosts.append(host)
    spec: dict[str, Any] = {
        "apiVersion": "k8sboot/v1alpha1",
        "kind": "Cluster",
        "name": name,
        "hosts": hosts,
        "packages": {"source": "mirror", "url": per_minor(url) if version else url},
        "etcd": etcd_release.cluster_settings(url),
    }
    if version:
        spec["kubernetes"] = {"version": version}
    if len(lab.with_role("control-plane")) > 1:  # the Vagrantfile's VIP, as with --vagrant
        spec["controlPlaneEndpoint"] = {"type": "kube-vip", "address": f"{lab.subnet}.10"}
    return spec


def write_lab_spec(
    lab: Lab, url: str, path: Path, name: str = "lab", version: str | None = None
) -> Path:
    path.write_text(yaml.safe_dump(lab_spec(lab, url, name, version), sort_keys=False))
    return path


def etcd_members(lab: Lab, via: str = "cp1") -> list[str]:
    """Names of the etcd members, asked with etcdctl on a control plane."""
    listing = lab.ssh(
        via,
        "sudo ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 "
        "--cacert /etc/kubernetes/pki/etcd/ca.crt "
        "--cert /etc/kubernetes/pki/etcd/healthcheck-client.crt "
        "--key /etc/kubernetes/pki/etcd/healthcheck-client.key member list -w json",
    ).stdout
    return sorted(m.get("name", "") for m in json.loads(listing)["members"])


# Re-signs a certificate on a control plane with its own key, subject and extensions so
# that it expires in DAYS days (python3-cryptography is in every lab machine).
SHORTEN = """
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
cert_path, ca, days = sys.argv[1], sys.argv[2], float(sys.argv[3])
old = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
ca_cert = x509.load_pem_x509_certificate(open(ca + ".crt", "rb").read())
ca_key = serialization.load_pem_private_key(open(ca + ".key", "rb").read(), None)
now = datetime.datetime.utcnow()
new = (
    x509.CertificateBuilder().subject_name(old.subject).issuer_name(ca_cert.subject)
    .public_key(old.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=days))
)
for extension in old.extensions:
    if extension.oid.dotted_string != "2.5.29.35":  # the authority key id comes from the CA
        new = new.add_extension(extension.value, extension.critical)
signed = new.sign(ca_key, hashes.SHA256())
open(cert_path, "wb").write(signed.public_bytes(serialization.Encoding.PEM))
"""


def shorten_certificate(lab: Lab, machine: str, cert: str, ca: str, days: float) -> None:
    """Make /etc/kubernetes/pki/CERT.crt (signed by CA) expire in `days` days."""
    pki = "/etc/kubernetes/pki"
    lab.ssh(machine, f"sudo python3 - {pki}/{cert}.crt {pki}/{ca} {days}", input=SHORTEN)
