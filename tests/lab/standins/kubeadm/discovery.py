"""Token discovery: cluster-info fetched without trust, its JWS signature checked with the
bootstrap token, the CA pinned by --discovery-token-ca-cert-hash, then fetched again over
the pinned CA."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import yaml

from .. import pki
from ..client import ApiError, Client
from . import tokens
from .errors import KubeadmError


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def detached_jws(content: str, token_id: str, token_secret: str) -> str:
    """HS256 JWS over `content` keyed by the token secret, with the payload elided
    (`header..signature`), the form the bootstrap signer stores as jws-kubeconfig-<id>."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64url(content.encode())}".encode()
    sig = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{_b64url(sig)}"


def verify_jws(content: str, jws: str, token_id: str, token_secret: str) -> bool:
    try:
        header_b64, _, sig_b64 = jws.split(".")
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    except ValueError:
        return False
    if header.get("kid") != token_id or header.get("alg") != "HS256":
        return False
    signing_input = f"{header_b64}.{_b64url(content.encode())}".encode()
    want = _b64url(hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest())
    return hmac.compare_digest(want, sig_b64)


def discover(
    endpoint: str, token: str, ca_hashes: list[str], skip_ca: bool, timeout: float, log
) -> tuple[bytes, str]:
    """The cluster CA and the server URL from cluster-info, trusted through the token."""
    tid, tsecret = tokens.parse(token)
    url = f"https://{endpoint}"
    insecure = Client(url, verify=False, timeout=10)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            cm = insecure.get("ConfigMap", "cluster-info", "kube-public")
            data = cm.get("data") or {}
            content = data.get("kubeconfig", "")
            sig = data.get(f"jws-kubeconfig-{tid}")
            if not sig:
                raise KubeadmError(
                    f"could not find a JWS signature in the cluster-info ConfigMap "
                    f'for token ID "{tid}"'
                )
            if not verify_jws(content, sig, tid, tsecret):
                raise KubeadmError(
                    "failed to verify JWS signature of received cluster info "
                    "object, can't trust this API Server"
                )
            break
        except (KubeadmError, ApiError, OSError) as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise KubeadmError(f"couldn't validate the identity of the API Server: {last}")
        log(f"[discovery] Retrying due to error: {last}")
        time.sleep(1)
    kc = yaml.safe_load(content)
    cluster = kc["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"])
    actual = pki.ca_cert_hash(pki.load_cert(ca))
    if not skip_ca and actual not in [h.strip().lower() for h in ca_hashes]:
        raise KubeadmError(
            f"cluster CA found in cluster-info ConfigMap is invalid: none of the "
            f'public keys "{actual}" are pinned'
        )
    # Fetch again, this time trusting the pinned CA, and insist on the same content.
    secure = Client(url, ca, timeout=10)
    try:
        again = secure.get("ConfigMap", "cluster-info", "kube-public")
    except (ApiError, OSError) as e:
        raise KubeadmError(f"couldn't validate the identity of the API Server: {e}") from None
    if (again.get("data") or {}).get("kubeconfig") != content:
        raise KubeadmError(
            "failed to verify the cluster-info: the secure and insecure fetches differ"
        )
    return ca, cluster["server"]
