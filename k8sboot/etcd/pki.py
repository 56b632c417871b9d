"""Certificates for etcd: k8sboot's own CA for external etcd, and server and peer
certificates with the right SANs (also re-issued for stacked etcd on a restore onto new
addresses, signed by kubeadm's etcd CA).

Keys are generated here, sent to their host on stdin and never written on the operator's
machine, except the external etcd CA's key, which lives in the state directory (0600).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8sboot.errors import UserError
from k8sboot.state import private_dir, write_private

CA_YEARS = 10
CERT_DAYS = 365
RENEW_BEFORE_DAYS = 30
_SERVER = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


@dataclass(frozen=True)
class CertSpec:
    """What a certificate must say: subject, names and usages."""

    common_name: str
    organization: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = False
    client: bool = True


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        return "Issued(<certificate and key>)"


class CA:
    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | object):
        self.cert = cert
        self.key = key

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, name: str) -> CA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CA:
        return cls(
            x509.load_pem_x509_certificate(cert_pem),
            serialization.load_pem_private_key(key_pem, password=None),
        )

    def issue(self, spec: CertSpec, days: int = CERT_DAYS) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]
        if spec.organization:
            attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organization))
        usages = [u for u, wanted in ((_SERVER, spec.server), (_CLIENT, spec.client)) if wanted]
        now = _now()
        not_after = min(now + dt.timedelta(days=days), _not_after(self.cert))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),
                critical=False,
            )
        )
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in spec.dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in spec.ip_addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())  # type: ignore[arg-type]
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _not_after(cert: x509.Certificate) -> dt.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=dt.UTC)


def fingerprint(pem: bytes) -> str:
    return hashlib.sha256(pem).hexdigest()


def satisfies(cert_pem: bytes, spec: CertSpec, ca_pem: bytes) -> str | None:
    """Why the certificate does not meet `spec` (signed by this CA, its names and usages,
    not expiring within RENEW_BEFORE_DAYS), or None when it does."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return "unreadable"
    if cert.issuer != ca.subject:
        return "signed by another CA"
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, or a CA of another kind
        return "signed by another CA"
    if _not_after(cert) - _now() < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return "expires soon"
    have_dns, have_ips = names_of(cert)
    if (
        not set(spec.dns_names) <= have_dns
        or not {str(ipaddress.ip_address(a)) for a in spec.ip_addresses} <= have_ips
    ):
        return "names changed"
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    if (spec.server and _SERVER not in usages) or (spec.client and _CLIENT not in usages):
        return "usages changed"
    return None


def names_of(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return (
        set(san.get_values_for_type(x509.DNSName)),
        {str(a) for a in san.get_values_for_type(x509.IPAddress)},
    )


class StoredCA:
    """The external etcd CA, kept in the state directory: ca.crt and ca.key (0600)."""

    def __init__(self, directory: Path):
        self.directory = directory

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def key_path(self) -> Path:
        return self.directory / "ca.key"

    def exists(self) -> bool:
        return self.cert_path.exists() and self.key_path.exists()

    def cert_pem(self) -> bytes | None:
        return self.cert_path.read_bytes() if self.cert_path.exists() else None

    def load_or_create(self, name: str) -> CA:
        if self.exists():
            try:
                return CA.from_pem(self.cert_path.read_bytes(), self.key_path.read_bytes())
            except ValueError as exc:
                raise UserError(f"{self.directory}: the etcd CA cannot be read ({exc})") from None
        if self.cert_path.exists() or self.key_path.exists():
            raise UserError(
                f"{self.directory}: one of ca.crt and ca.key is missing; restore it from a copy "
                "(the etcd hosts' certificates were signed by it)"
            )
        ca = CA.create(name)
        private_dir(self.directory)
        write_private(self.key_path, _key_pem(ca.key))  # type: ignore[arg-type]
        write_private(self.cert_path, ca.cert_pem)
        return ca
