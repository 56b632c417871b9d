"""etcd v3 through its JSON gateway (served by etcd 3.4 on every client URL).

Keys and values are bytes in etcd; the gateway carries them base64-encoded and 64-bit
numbers as strings.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator

from . import tlsutil


def b64(s: bytes | str) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s: str | None) -> bytes:
    return base64.b64decode(s or "")


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes a range request mean "every key starting with prefix"."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


class EtcdError(Exception):
    pass


class Etcd:
    def __init__(
        self,
        endpoints: list[str],
        ca_pem: bytes | None = None,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        timeout: float = 5.0,
    ):
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.ctx = tlsutil.client_context(ca_pem, cert_pem, key_pem) if ca_pem else None
        if self.ctx is not None:
            # etcd serving certificates name the member's IPs; endpoints are IPs too.
            self.ctx.check_hostname = False
        # Kept-alive connections per thread and endpoint, as the upstream API server keeps
        # its gRPC connections: a TLS handshake per request cost etcd and the API server
        # about half of a lab machine's two cores on an idle cluster.
        self._local = threading.local()

    def _connect(self, endpoint: str, timeout: float):
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme == "https":
            return http.client.HTTPSConnection(
                u.hostname, u.port, context=self.ctx, timeout=timeout
            )
        return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)

    def call(self, path: str, body: dict, endpoints: list[str] | None = None) -> dict:
        last: Exception | None = None
        data = json.dumps(body).encode()
        for ep in endpoints or self.endpoints:
            try:
                status, answer = self._post(ep, path, data)
            except (OSError, http.client.HTTPException, ValueError) as e:
                last = e
                continue
            if status != 200:
                msg = answer.get("error") or answer.get("message") or str(answer)
                raise EtcdError(f"{path}: {msg}")
            return answer
        raise EtcdError(
            f"no etcd endpoint answered ({', '.join(endpoints or self.endpoints)}): {last}"
        )

    def _post(self, endpoint: str, path: str, data: bytes) -> tuple[int, dict]:
        kept = self._local.__dict__.setdefault("connections", {})
        conn, resp, raw = tlsutil.exchange(
            kept.pop(endpoint, None),
            lambda: self._connect(endpoint, self.timeout),
            "POST",
            path,
            data,
            {"Content-Type": "application/json"},
        )
        kept[endpoint] = conn
        return resp.status, json.loads(raw or b"{}")

    # --- kv ---------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[bytes, int] | None:
        r = self.call("/v3/kv/range", {"key": b64(key)})
        kvs = r.get("kvs") or []
        if not kvs:
            return None
        return unb64(kvs[0].get("value")), int(kvs[0]["mod_revision"])

    def range_prefix(
        self, prefix: str, keys_only: bool = False
    ) -> tuple[list[tuple[str, bytes, int]], int]:
        p = prefix.encode()
        r = self.call(
            "/v3/kv/range", {"key": b64(p), "range_end": b64(prefix_end(p)), "keys_only": keys_only}
        )
        out = [
            (unb64(kv["key"]).decode(), unb64(kv.get("value")), int(kv["mod_revision"]))
            for kv in r.get("kvs") or []
        ]
        return out, int(r["header"]["revision"])

    def revision(self) -> int:
        r = self.call("/v3/kv/range", {"key": b64("/registry/health-revision"), "count_only": True})
        return int(r["header"]["revision"])

    def txn_put(self, key: str, value: bytes, mod_revision: int | None) -> int | None:
        """Put if the key's mod revision is `mod_revision` (0: must not exist).

        Returns the new revision, or None when the comparison failed."""
        compare = []
        if mod_revision is not None:
            target = "CREATE" if mod_revision == 0 else "MOD"
            field = "create_revision" if mod_revision == 0 else "mod_revision"
            compare = [
                {"key": b64(key), "target": target, "result": "EQUAL", field: str(mod_revision)}
            ]
        r = self.call(
            "/v3/kv/txn",
            {
                "compare": compare,
                "success": [{"request_put": {"key": b64(key), "value": b64(value)}}],
            },
        )
        if not r.get("succeeded"):
            return None
        return int(r["header"]["revision"])

    def txn_delete(self, key: str, mod_revision: int | None) -> int | None:
        compare = []
        if mod_revision is not None:
            compare = [
                {
                    "key": b64(key),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": str(mod_revision),
                }
            ]
        r = self.call(
            "/v3/kv/txn",
            {"compare": compare, "success": [{"request_delete_range": {"key": b64(key)}}]},
        )
        if not r.get("succeeded"):
            return None
        return int(r["header"]["revision"])

    def watch(
        self, prefix: str, start_revision: int, stop=None
    ) -> Iterator[tuple[str, str, bytes | None, bytes | None, int] | None]:
        """Yield (type PUT/DELETE, key, value, prev_value, mod_revision); None on progress ticks.

        `stop()` is asked between events; the stream ends when it returns True.
        """
        p = prefix.encode()
        body = {
            "create_request": {
                "key": b64(p),
                "range_end": b64(prefix_end(p)),
                "start_revision": str(start_revision),
                "prev_kv": True,
                "progress_notify": True,
            }
        }
        last_err = None
        for ep in self.endpoints:
            conn = self._connect(ep, 3.0)
            try:
                conn.request(
                    "POST",
                    "/v3/watch",
                    body=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as e:
                last_err = e
                conn.close()
        else:
            raise EtcdError(f"watch: no etcd endpoint answered: {last_err}")
        try:
            while True:
                if stop is not None and stop():
                    return
                try:
                    line = resp.readline()
                except TimeoutError:
                    yield None
                    continue
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                msg = json.loads(line).get("result") or {}
                if msg.get("compact_revision") and msg["compact_revision"] != "0":
                    raise EtcdError("watch: required revision has been compacted")
                events = msg.get("events") or []
                if not events:
                    yield None
                for ev in events:
                    kv = ev["kv"]
                    prev = ev.get("prev_kv")
                    yield (
                        ev.get("type", "PUT"),
                        unb64(kv["key"]).decode(),
                        unb64(kv["value"]) if kv.get("value") else None,
                        unb64(prev["value"]) if prev and prev.get("value") else None,
                        int(kv.get("mod_revision", 0)),
                    )
        finally:
            conn.close()

    # --- cluster ----------------------------------------------------------------------------
    def members(self) -> list[dict]:
        return self.call("/v3/cluster/member/list", {}).get("members") or []

    def member_add(self, peer_url: str, learner: bool) -> dict:
        return self.call("/v3/cluster/member/add", {"peerURLs": [peer_url], "isLearner": learner})

    def member_promote(self, member_id: str) -> dict:
        return self.call("/v3/cluster/member/promote", {"ID": member_id})

    def member_remove(self, member_id: str) -> dict:
        return self.call("/v3/cluster/member/remove", {"ID": member_id})

    def status(self, endpoint: str) -> dict:
        return self.call("/v3/maintenance/status", {}, endpoints=[endpoint])
