"""X.509 material the way kubeadm makes it: RSA-2048 keys, 10-year CAs, 1-year leaves."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .paths import host

CA_VALIDITY = dt.timedelta(days=3650)
CERT_VALIDITY = dt.timedelta(days=365)
SKEW = dt.timedelta(minutes=5)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key) -> bytes:
    # kubeadm writes "RSA PRIVATE KEY" (PKCS#1) blocks.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def not_after(cert: x509.Certificate) -> dt.datetime:
    """The certificate's notAfter as an aware UTC datetime. cryptography 42+ has
    `not_valid_after_utc` (and deprecates the naive `not_valid_after`); Debian bookworm's
    python3-cryptography (38) has only the naive one."""
    aware = getattr(cert, "not_valid_after_utc", None)
    if aware is not None:
        return aware
    return cert.not_valid_after.replace(tzinfo=dt.UTC)


def not_before(cert: x509.Certificate) -> dt.datetime:
    """The certificate's notBefore as an aware UTC datetime (see not_after)."""
    aware = getattr(cert, "not_valid_before_utc", None)
    if aware is not None:
        return aware
    return cert.not_valid_before.replace(tzinfo=dt.UTC)


def load_cert(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def load_key(data: bytes):
    return serialization.load_pem_private_key(data, password=None)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def new_ca(cn: str, validity: dt.timedelta = CA_VALIDITY):
    key = new_key()
    start = now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - SKEW)
        .not_valid_after(start + validity)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@dataclass
class CertSpec:
    """What a leaf certificate is for: names, usages, SANs."""

    cn: str
    orgs: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    dns: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)


def sign(
    spec: CertSpec,
    ca_cert: x509.Certificate,
    ca_key,
    public_key=None,
    validity: dt.timedelta = CERT_VALIDITY,
    period: tuple[dt.datetime, dt.datetime] | None = None,
):
    """Sign a leaf for `spec`; makes a new key unless `public_key` is given (CSR signing).
    `period` (notBefore, notAfter) is taken as it is, neither backdated nor capped at the
    CA's notAfter (kubeadm's pkiutil.NewSignedCert given both)."""
    key = None
    if public_key is None:
        key = new_key()
        public_key = key.public_key()
    start = now()
    valid_from, valid_to = period or (start - SKEW, min(start + validity, not_after(ca_cert)))
    usages = []
    if spec.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.cn, spec.orgs))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(spec.dns)]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(spec.ips)]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def sans_of(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return ext.get_values_for_type(x509.DNSName), [
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    ]


def subject_of(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (cn[0].value if cn else ""), [o.value for o in orgs]


def ca_cert_hash(cert: x509.Certificate) -> str:
    """kubeadm's `--discovery-token-ca-cert-hash`: sha256 of the DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


# --- files -------------------------------------------------------------------------------


def write_file(path: str, data: bytes, mode: int) -> None:
    real = host(path)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    tmp = real + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, real)


def write_pair(base: str, cert: x509.Certificate, key) -> None:
    """`base`.crt (0644) and `base`.key (0600), as kubeadm writes them."""
    write_file(base + ".crt", cert_pem(cert), 0o644)
    if key is not None:
        write_file(base + ".key", key_pem(key), 0o600)


def read_pair(base: str):
    with open(host(base + ".crt"), "rb") as f:
        cert = load_cert(f.read())
    with open(host(base + ".key"), "rb") as f:
        key = load_key(f.read())
    return cert, key


def exists(path: str) -> bool:
    return os.path.exists(host(path))
