"""Authenticated manifests: with a backup key, each manifest carries an HMAC-SHA256 over
what it says about its backup (name, cluster, time, origin, hashes, sizes, revision,
encryption...), keyed by a key derived from the backup key. Whoever can write to the
catalogue but lacks the key can then neither substitute a file (a plaintext snapshot of
their own, an older genuine one) and fix up its manifest, nor pass a genuine backup off
under another name. docs/backup-format.md describes it byte by byte.

The results of `etcd verify` (`verification`) are written after the backup and stay
outside the MAC; nothing there is trusted to decide what to restore.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from k8sboot.etcd.archive import Key

if TYPE_CHECKING:
    from k8sboot.etcd.catalogue import Manifest

MAC_INFO = b"k8sboot etcd manifest mac v1"
UNSIGNED = ("mac", "verification")  # the manifest's fields outside the MAC


def _mac_key(key: Key) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=MAC_INFO).derive(key.material)


def signed_bytes(manifest: Manifest) -> bytes:
    """What the MAC covers: the manifest's JSON object without UNSIGNED, canonical as RFC
    8785 (JCS) makes it; for these fields (strings, integers, null, no floats) that is
    sorted keys, no whitespace, UTF-8."""
    document = {k: v for k, v in asdict(manifest).items() if k not in UNSIGNED}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_mac(manifest: Manifest, key: Key) -> str:
    return hmac.new(_mac_key(key), signed_bytes(manifest), hashlib.sha256).hexdigest()


def seal(manifest: Manifest, key: Key | None) -> None:
    """Give a new manifest its MAC (none without a key: nothing to key it with)."""
    manifest.mac = manifest_mac(manifest, key) if key is not None else None


def why_untrusted(manifest: Manifest, key: Key | None) -> str | None:
    """Why a manifest cannot be trusted with `key` configured; None when it can, or when
    there is nothing to check it with (no key, or the backup names another key: the
    configuration's business, not the backup's)."""
    if key is None:
        return None
    if manifest.encryption is None:
        return (
            "is a plaintext backup, but backup.encryptionKeyFile is set and k8sboot then only "
            "trusts encrypted, authenticated backups (was the file replaced?); if you made it "
            "yourself before setting the key, restore it with backup.encryptionKeyFile unset"
        )
    if manifest.encryption.get("key_id") != key.id:
        return None
    if not manifest.mac:
        return (
            "has no manifest MAC (made before k8sboot authenticated manifests, or the MAC "
            "was removed): take a new backup with `k8sboot etcd backup`; this one can only "
            "be restored by hand (docs/backup-format.md)"
        )
    if not hmac.compare_digest(str(manifest.mac).encode(), manifest_mac(manifest, key).encode()):
        return (
            "fails authentication: its manifest was changed, renamed or forged since k8sboot "
            "wrote it; do not restore it, choose another backup"
        )
    return None
