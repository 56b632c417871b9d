"""kubeadm stand-in: `kubeadm kubeconfig user`, as upstream's
cmd/kubeadm/app/cmd/kubeconfig.go (v1.31.0-v1.33.x; --config optional since v1.27,
kubernetes#116074) with phases/kubeconfig/kubeconfig.go WriteKubeConfigWithClientCert and
util/pkiutil/pki_helpers.go NewSignedCert: the kubeconfig on stdout (client-go's sorted
keys, then a blank line: Fprintln), server = controlPlaneEndpoint (else the local API
endpoint), user and context `NAME` and `NAME@clusterName`, a client certificate signed by
the cluster CA with CN = --client-name, O = every --org (a repeatable, comma-separated
StringSlice), notBefore = the CA's, notAfter = start + --validity-period (default
CertificateValidityPeriod, 8760h; a longer one is warned about)."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.lab.standins import pki

from .harness import LAB, standin_env

VERSIONS = [("v1.30.13", "kubeadm.k8s.io/v1beta3"), ("v1.33.1", "kubeadm.k8s.io/v1beta4")]


def write_ca(root: Path) -> x509.Certificate:
    cert, key = pki.new_ca("kubernetes")
    directory = root / "etc/kubernetes/pki"
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes(pki.cert_pem(cert))
    (directory / "ca.key").write_bytes(pki.key_pem(key))
    return cert


def config(tmp_path: Path, api: str, endpoint: str | None = "10.0.0.10:6443") -> Path:
    cluster: dict = {"apiVersion": api, "kind": "ClusterConfiguration", "clusterName": "lab"}
    if endpoint:
        cluster["controlPlaneEndpoint"] = endpoint
    docs = [
        {
            "apiVersion": api,
            "kind": "InitConfiguration",
            "localAPIEndpoint": {"advertiseAddress": "10.0.0.11", "bindPort": 6443},
            "nodeRegistration": {"name": "cp1"},
        },
        cluster,
    ]
    path = tmp_path / "kubeadm.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def kubeadm(tmp_path: Path, version: str, *args: str) -> subprocess.CompletedProcess:
    env = standin_env(tmp_path, version)
    return subprocess.run(
        [sys.executable, "-m", "standins.kubeadm", "kubeconfig", "user", *args],
        cwd=LAB,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def client_certificate(kubeconfig: dict) -> tuple[x509.Certificate, bytes]:
    (user,) = kubeconfig["users"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["user"]["client-certificate-data"]))
    return cert, base64.b64decode(user["user"]["client-key-data"])


@pytest.mark.parametrize(("version", "api"), VERSIONS)
def test_a_client_certificate_kubeconfig_like_upstream(tmp_path, version, api) -> None:
    ca = write_ca(tmp_path / "root")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    p = kubeadm(
        tmp_path,
        version,
        f"--config={config(tmp_path, api)}",
        "--client-name=alice",
        "--org=dev",
        "--org",
        "ops,qa",
        "--validity-period=24h",
    )
    after = dt.datetime.now(dt.UTC)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith("\n\n") and p.stderr == ""
    kubeconfig = yaml.safe_load(p.stdout)
    assert list(kubeconfig) == sorted(kubeconfig)
    assert kubeconfig["clusters"][0]["name"] == "lab"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.0.0.10:6443"
    ca_data = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca_data == pki.cert_pem(ca)
    assert kubeconfig["contexts"] == [
        {"name": "alice@lab", "context": {"cluster": "lab", "user": "alice"}}
    ]
    assert kubeconfig["current-context"] == "alice@lab"
    assert kubeconfig["users"][0]["name"] == "alice"

    cert, key_pem = client_certificate(kubeconfig)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "dev",
        "ops",
        "qa",
    ]
    assert cert.issuer == ca.subject
    ca.public_key().verify(  # signed by the cluster CA
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pki.not_before(cert) == pki.not_before(ca)
    day = dt.timedelta(hours=24)
    assert before + day <= pki.not_after(cert) <= after + day
    key = serialization.load_pem_private_key(key_pem, None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_without_an_endpoint_the_server_is_the_local_api_endpoint(tmp_path) -> None:
    write_ca(tmp_path / "root")
    cfg = config(tmp_path, "kubeadm.k8s.io/v1beta4", endpoint=None)
    p = kubeadm(tmp_path, "v1.33.1", "--config", str(cfg), "--client-name", "bob")
    assert p.returncode == 0, p.stderr
    kubeconfig = yaml.safe_load(p.stdout)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.0.0.11:6443"
    cert, _ = client_certificate(kubeconfig)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []


def test_the_default_validity_is_a_year_and_a_longer_one_is_warned_about(tmp_path) -> None:
    write_ca(tmp_path / "root")
    cfg = str(config(tmp_path, "kubeadm.k8s.io/v1beta4"))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    p = kubeadm(tmp_path, "v1.33.1", "--config", cfg, "--client-name", "carol")
    assert p.returncode == 0 and p.stderr == ""
    cert, _ = client_certificate(yaml.safe_load(p.stdout))
    year = dt.timedelta(hours=8760)
    assert before + year <= pki.not_after(cert) <= dt.datetime.now(dt.UTC) + year

    p = kubeadm(
        tmp_path, "v1.33.1", "--config", cfg, "--client-name", "carol", "--validity-period=87600h"
    )
    assert p.returncode == 0
    assert (
        "WARNING: the specified certificate validity period 87600h0m0s is longer than the "
        "default duration 8760h0m0s, this may increase security risks."
    ) in p.stderr


def test_a_token_instead_of_a_certificate(tmp_path) -> None:
    write_ca(tmp_path / "root")
    cfg = str(config(tmp_path, "kubeadm.k8s.io/v1beta4"))
    p = kubeadm(tmp_path, "v1.33.1", f"--config={cfg}", "--client-name=ci", "--token=abc.def")
    assert p.returncode == 0, p.stderr
    assert yaml.safe_load(p.stdout)["users"] == [{"name": "ci", "user": {"token": "abc.def"}}]


def test_errors_like_upstream(tmp_path) -> None:
    cfg = str(config(tmp_path, "kubeadm.k8s.io/v1beta4"))
    p = kubeadm(tmp_path, "v1.33.1", "--config", cfg)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith('required flag(s) "client-name" not set\n')

    p = kubeadm(tmp_path, "v1.33.1", "--config", cfg, "--client-name=dave")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith(
        "couldn't create a kubeconfig; the CA files couldn't be loaded: couldn't load the "
        "certificate file "
    )

    write_ca(tmp_path / "root")
    p = kubeadm(
        tmp_path, "v1.33.1", "--config", cfg, "--client-name=dave", "--validity-period=soon"
    )
    assert p.returncode == 1
    assert p.stderr.startswith('invalid argument "soon" for "--validity-period" flag')


def test_the_user_kubeconfig_authenticates_at_the_api_server(tmp_path, etcd) -> None:
    """What `k8sboot kubeconfig --user` hands out works with the real kubectl: the API
    server stand-in authenticates its certificate as the user CN (upstream's x509
    authenticator, staging/src/k8s.io/apiserver/pkg/authentication/request/x509/x509.go,
    CommonNameUserConversion, v1.30-v1.33), whom RBAC then refuses by name."""
    from tests.lab.standins.apiserver.__main__ import bootstrap
    from tests.lab.standins.apiserver.registry import Registry
    from tests.lab.standins.apiserver.storage import Storage

    from .harness import api_server, kubectl_path

    registry = Registry(Storage(etcd))
    bootstrap(registry, {})  # upstream's default RBAC, as the stand-in starts with it
    with api_server(registry, tmp_path) as (port, _, _):
        pki_dir = tmp_path / "root/etc/kubernetes/pki"
        pki_dir.mkdir(parents=True)
        for name in ("ca.crt", "ca.key"):
            (pki_dir / name).write_bytes((tmp_path / name).read_bytes())
        made = kubeadm(
            tmp_path,
            "v1.33.1",
            "--client-name=alice",
            "--org=dev",
            "--config",
            str(config(tmp_path, VERSIONS[1][1], f"127.0.0.1:{port}")),
        )
        assert made.returncode == 0, made.stderr
        path = tmp_path / "alice.conf"
        path.write_text(made.stdout)
        denied = subprocess.run(
            [kubectl_path(33), "--kubeconfig", str(path), "get", "pods", "-n", "default"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Authenticated as alice (not anonymous), and not allowed by default.
        assert 'User "alice" cannot list resource "pods"' in denied.stderr, denied.stderr
