"""kubeadm stand-in: the certificates and kubeconfigs of `kubeadm init phase certs|kubeconfig`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from tests.lab.standins import pki

from .harness import pythonpath

LAB = Path(__file__).resolve().parents[1] / "lab"


def test_certs_and_kubeconfigs_like_kubeadm(tmp_path):
    root = tmp_path / "root"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "kubeadm.k8s.io/v1beta4",
                    "kind": "InitConfiguration",
                    "localAPIEndpoint": {"advertiseAddress": "192.168.56.11", "bindPort": 6443},
                    "nodeRegistration": {"name": "cp1"},
                },
                {
                    "apiVersion": "kubeadm.k8s.io/v1beta4",
                    "kind": "ClusterConfiguration",
                    "controlPlaneEndpoint": "192.168.56.10:6443",
                    "apiServer": {"certSANs": ["k8s.example.internal", "10.1.2.3"]},
                },
            ]
        )
    )
    env = dict(os.environ, K8SBOOT_STANDIN_ROOT=str(root), PYTHONPATH=pythonpath())
    for phase in ("certs", "kubeconfig"):
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "standins.kubeadm",
                "init",
                "phase",
                phase,
                "all",
                "--config",
                str(cfg),
            ],
            cwd=LAB,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
    pkidir = root / "etc/kubernetes/pki"
    api = pki.load_cert((pkidir / "apiserver.crt").read_bytes())
    dns, ips = pki.sans_of(api)
    assert {
        "cp1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "k8s.example.internal",
    } <= set(dns)
    assert {"10.96.0.1", "192.168.56.11", "192.168.56.10", "10.1.2.3"} <= set(ips)
    ca = pki.load_cert((pkidir / "ca.crt").read_bytes())
    assert ca.subject.rfc4514_string() == "CN=kubernetes"
    # (verify_directly_issued_by needs cryptography 40+; the lab machines have 38)
    ca.public_key().verify(
        api.signature, api.tbs_certificate_bytes, padding.PKCS1v15(), api.signature_hash_algorithm
    )
    etcd_server = pki.load_cert((pkidir / "etcd/server.crt").read_bytes())
    assert pki.subject_of(etcd_server)[0] == "cp1"
    assert {"127.0.0.1", "192.168.56.11"} <= set(pki.sans_of(etcd_server)[1])
    for name in (
        "front-proxy-ca",
        "front-proxy-client",
        "apiserver-kubelet-client",
        "apiserver-etcd-client",
        "etcd/ca",
        "etcd/peer",
        "etcd/healthcheck-client",
    ):
        assert (pkidir / f"{name}.crt").exists() and (
            pkidir / f"{name}.key"
        ).stat().st_mode & 0o777 == 0o600
    assert (pkidir / "sa.key").exists() and (pkidir / "sa.pub").exists()
    from tests.lab.standins.kubeconfig import Credentials

    admin = yaml.safe_load((root / "etc/kubernetes/admin.conf").read_text())
    creds = Credentials(admin)
    assert creds.server == "https://192.168.56.10:6443"
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    assert pki.subject_of(cert) == ("kubernetes-admin", ["kubeadm:cluster-admins"])
    super_admin = Credentials(
        yaml.safe_load((root / "etc/kubernetes/super-admin.conf").read_text())
    )
    assert pki.subject_of(x509.load_pem_x509_certificate(super_admin.cert_pem))[1] == [
        "system:masters"
    ]
    cm = Credentials(yaml.safe_load((root / "etc/kubernetes/controller-manager.conf").read_text()))
    assert cm.server == "https://192.168.56.11:6443"
    assert (root / "etc/kubernetes/kubelet.conf").stat().st_mode & 0o777 == 0o600
    assert pki.ca_cert_hash(ca).startswith("sha256:") and len(pki.ca_cert_hash(ca)) == 71
