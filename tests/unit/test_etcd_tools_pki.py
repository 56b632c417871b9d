"""What the etcd tools on a host can do; certificates and why they would be re-issued."""

from __future__ import annotations

from cryptography import x509

from k8sboot.etcd.pki import CA, CertSpec, names_of, satisfies
from k8sboot.etcd.tools import parse

ETCDCTL_34 = "etcdctl version: 3.4.23\n--\n--\n0\n--\n/usr/local/bin/etcd\n"
ETCDUTL_36 = "etcdctl version: 3.6.1\n--\netcdutl version: 3.6.1\n--\n2\n--\n"


def test_etcd_34_has_no_etcdutl_and_no_bump() -> None:
    tools = parse(ETCDCTL_34)
    assert (tools.etcdctl, tools.etcdutl, tools.bump_revision) == ("3.4.23", None, False)
    assert tools.offline == "/usr/local/bin/etcdctl" and tools.etcd == "/usr/local/bin/etcd"
    warning = tools.missing_restore_flags()
    assert warning and "--bump-revision" in warning and "no etcdutl" in warning


def test_etcdutl_with_the_restore_flags() -> None:
    tools = parse(ETCDUTL_36)
    assert (tools.etcdutl, tools.bump_revision) == ("3.6.1", True)
    assert tools.offline == "/usr/local/bin/etcdutl"
    assert tools.missing_restore_flags() is None and tools.etcd is None
    assert parse("").etcdctl is None


SERVER = CertSpec(
    "e1", dns_names=("e1", "localhost"), ip_addresses=("10.0.0.31", "127.0.0.1"), server=True
)


def test_issued_certificates_carry_names_and_usages() -> None:
    ca = CA.create("test-ca")
    issued = ca.issue(SERVER)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert names_of(cert) == ({"e1", "localhost"}, {"10.0.0.31", "127.0.0.1"})
    assert satisfies(issued.cert_pem, SERVER, ca.cert_pem) is None
    assert b"PRIVATE KEY" in issued.key_pem and "PRIVATE" not in repr(issued)


def test_reasons_to_reissue() -> None:
    ca = CA.create("test-ca")
    issued = ca.issue(SERVER)
    moved = CertSpec("e1", ip_addresses=("10.0.0.41",), server=True)
    assert satisfies(issued.cert_pem, moved, ca.cert_pem) == "names changed"
    assert satisfies(issued.cert_pem, SERVER, CA.create("other").cert_pem) == "signed by another CA"
    client_only = ca.issue(CertSpec("x"))
    assert satisfies(client_only.cert_pem, SERVER, ca.cert_pem) in (
        "names changed",
        "usages changed",
    )
    soon = ca.issue(SERVER, days=10)
    assert satisfies(soon.cert_pem, SERVER, ca.cert_pem) == "expires soon"
    assert satisfies(b"garbage", SERVER, ca.cert_pem) == "unreadable"
