"""What the controller-manager and scheduler stand-ins share: flags, an HTTPS /healthz on
their secure port (self-signed, as upstream does without --cert-dir), leader election
through a Lease in kube-system, and taint/affinity matching."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import pki
from .client import ApiError, Client
from .selectors_util import match_expressions


def parse_flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for a in argv:
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
            out[k] = v if _ else "true"
    return out


def log(component: str, msg: str) -> None:
    t = dt.datetime.now()
    sys.stderr.write(f"I{t:%m%d %H:%M:%S.%f} {os.getpid():7d} {component}.go:0] {msg}\n")
    sys.stderr.flush()


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        code = 200 if self.path.split("?")[0] in ("/healthz", "/livez", "/readyz") else 404
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def serve_health(bind: str, port: int) -> None:
    cert, key = pki.new_ca(f"{bind}@{int(time.time())}", dt.timedelta(days=365))
    d = tempfile.mkdtemp(prefix="standin-serving-")
    cp, kp = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    with open(cp, "wb") as f:
        f.write(pki.cert_pem(cert))
    with open(os.open(kp, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(pki.key_pem(key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cp, kp)
    try:
        srv = ThreadingHTTPServer((bind, port), _Health)
    except OSError as e:
        log("health", f"cannot serve /healthz on {bind}:{port}: {e}")
        return
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    s = s.replace("Z", "+00:00")
    if "." in s:
        head, tail = s.split(".", 1)
        frac, _, tz = tail.partition("+")
        s = f"{head}.{frac[:6]}+{tz}"
    return dt.datetime.fromisoformat(s)


class LeaderElector:
    """Acquire and renew kube-system/<name>; `is_leader()` says whether to act."""

    def __init__(self, client: Client, name: str, duration: int = 15):
        self.client, self.name, self.duration = client, name, duration
        self.identity = f"{socket.gethostname()}_{uuid.uuid4()}"
        self.leader_until = 0.0

    def is_leader(self) -> bool:
        if time.monotonic() < self.leader_until - self.duration / 2:
            return True
        try:
            return self._try()
        except (ApiError, OSError) as e:
            log("leaderelection", f"error retrieving resource lock kube-system/{self.name}: {e}")
            return time.monotonic() < self.leader_until

    def _try(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": micro_now(),
        }
        try:
            lease = self.client.get("Lease", self.name, "kube-system")
        except ApiError as e:
            if e.status != 404:
                raise
            spec.update(acquireTime=micro_now(), leaseTransitions=0)
            self.client.create(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": "kube-system"},
                    "spec": spec,
                }
            )
            log("leaderelection", f"successfully acquired lease kube-system/{self.name}")
            self.leader_until = time.monotonic() + self.duration
            return True
        cur = lease.get("spec") or {}
        renew = parse_time(cur.get("renewTime"))
        held_by_other = cur.get("holderIdentity") not in (None, "", self.identity)
        if (
            held_by_other
            and renew
            and (now - renew).total_seconds() < cur.get("leaseDurationSeconds", self.duration)
        ):
            self.leader_until = 0
            return False
        if held_by_other or not cur.get("holderIdentity"):
            spec["acquireTime"] = micro_now()
            spec["leaseTransitions"] = int(cur.get("leaseTransitions") or 0) + 1
            log("leaderelection", f"successfully acquired lease kube-system/{self.name}")
        else:
            spec["acquireTime"] = cur.get("acquireTime")
            spec["leaseTransitions"] = cur.get("leaseTransitions", 0)
        lease["spec"] = spec
        try:
            self.client.update(lease)
        except ApiError as e:
            if e.status == 409:
                return False
            raise
        self.leader_until = time.monotonic() + self.duration
        return True


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if op == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if (
            op == "Equal"
            and t.get("key") == taint.get("key")
            and (t.get("value") or "") == (taint.get("value") or "")
        ):
            return True
    return False


def node_fits(pod_spec: dict, node: dict) -> str | None:
    """None if the pod may run on the node, else a short reason (scheduler's wording)."""
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
            pod_spec.get("tolerations"), taint
        ):
            val = f": {taint['value']}" if taint.get("value") else ""
            return f"node(s) had untolerated taint {{{taint['key']}{val}}}"
    labels = node["metadata"].get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return "node(s) didn't match Pod's node affinity/selector"
    req = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if req:
        terms = req.get("nodeSelectorTerms") or []
        if terms and not any(match_expressions(t, node) for t in terms):
            return "node(s) didn't match Pod's node affinity/selector"
    return None
