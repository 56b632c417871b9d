"""Scheduled snapshots at rest on the control planes: encrypted there with age
(https://age-encryption.org/v1) to an X25519 recipient, so that nothing on a node can
decrypt them; `etcd pull` decrypts them with the matching identity.

The identity is derived from the backup key (backup.encryptionKeyFile), so there is no
second secret to keep: its 32 bytes are HKDF-SHA256(backup key, no salt, info
IDENTITY_INFO), written as age writes identities (Bech32, "AGE-SECRET-KEY-1..."). Its
recipient ("age1...") is rendered into the host's snapshot script.

Next to each NAME.db.age the script leaves NAME.db.status: the line `etcdutl snapshot
status -w json` printed for the plain snapshot, then the plain snapshot's sha256 (hex).
The status cannot be read from an encrypted file on the host, and the sha256 ties it to
what the operator decrypts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import pyrage
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from k8sboot.etcd.archive import Key, load_key
from k8sboot.etcd.client import SnapshotStatus, parse_snapshot_status
from k8sboot.spec import Cluster
from k8sboot.state import create_secret_file

IDENTITY_INFO = b"k8sboot etcd scheduled snapshots age identity v1"
SEALED_SUFFIX = ".db.age"
STATUS_SUFFIX = ".db.status"


class Undecryptable(Exception):
    """A sealed snapshot the derived identity cannot open (another key, or damaged)."""


# -- keys ---------------------------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32(hrp: str, data: bytes) -> str:
    """Bech32 (BIP 173) with age's rule of no length limit; checked against pyrage's own
    encoding in the tests."""
    words, acc, bits = [], 0, 0
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    chk = 1
    for value in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + words + [0] * 6:
        top, chk = chk >> 25, ((chk & 0x1FFFFFF) << 5) ^ value
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= gen if (top >> i) & 1 else 0
    chk ^= 1
    checksum = [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def identity_of(key: Key) -> str:
    """The age identity (a secret) that opens the scheduled snapshots sealed for `key`."""
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=IDENTITY_INFO).derive(
        key.material
    )
    return _bech32("age-secret-key-", secret).upper()


def recipient_of(key: Key) -> str:
    return str(pyrage.x25519.Identity.from_str(identity_of(key)).to_public())


def cluster_key(cluster: Cluster) -> Key | None:
    path = cluster.backup.encryption_key_file
    return load_key(path) if path is not None else None


def recipient(cluster: Cluster) -> str | None:
    """The recipient hosts seal scheduled snapshots to; None without a backup key."""
    key = cluster_key(cluster)
    return recipient_of(key) if key else None


def write_identity_file(key: Key, path: Path) -> None:
    """The identity in `path` (0600, never overwriting), for `age -d -i PATH`."""
    create_secret_file(
        path,
        "# age identity of the scheduled etcd snapshots (k8sboot etcd age-identity)\n"
        f"# recipient: {recipient_of(key)}\n{identity_of(key)}\n",
    )


# -- pulling ------------------------------------------------------------------------------


def sealed_name(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(SEALED_SUFFIX)


def status_path(sealed: str) -> str:
    return sealed.removesuffix(SEALED_SUFFIX) + STATUS_SUFFIX


def parse_status_file(text: str) -> tuple[SnapshotStatus, str]:
    """(snapshot status, plain sha256) from a NAME.db.status; ValueError if malformed."""
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise ValueError("not two lines")
    digest = lines[1].strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("no sha256 on its second line")
    try:
        return parse_snapshot_status(json.loads(lines[0])), digest
    except (KeyError, TypeError):
        raise ValueError("no snapshot status on its first line") from None


def decrypt(sealed: BinaryIO, out, key: Key) -> None:
    """Write the plain snapshot in `sealed` (an age file) to `out`. Raises Undecryptable."""
    identity = pyrage.x25519.Identity.from_str(identity_of(key))
    try:
        pyrage.decrypt_io(sealed, out, [identity])
    except pyrage.DecryptError as error:
        raise Undecryptable(str(error)) from None
