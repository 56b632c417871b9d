"""A small Kubernetes REST client for the stand-ins (kubeadm, kubelet, controllers)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator

from . import tlsutil
from .kubeconfig import Credentials

TRANSIENT_STATUS = {429, 500, 502, 503, 504}
RETRY_INTERVAL = 0.5


class ApiError(Exception):
    def __init__(self, status: int, body: dict | str):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = self.body.get("reason", "")
        super().__init__(self.body.get("message") or f"HTTP {status}")


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


# group/version and plural per kind, for the kinds the stand-ins talk about.
PATHS = {
    "Namespace": ("v1", "namespaces", False),
    "Node": ("v1", "nodes", False),
    "Pod": ("v1", "pods", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Secret": ("v1", "secrets", True),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Service": ("v1", "services", True),
    "Event": ("v1", "events", True),
    "Endpoints": ("v1", "endpoints", True),
    "Deployment": ("apps/v1", "deployments", True),
    "ReplicaSet": ("apps/v1", "replicasets", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
    "StatefulSet": ("apps/v1", "statefulsets", True),
    "ControllerRevision": ("apps/v1", "controllerrevisions", True),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets", True),
    "Lease": ("coordination.k8s.io/v1", "leases", True),
    "CertificateSigningRequest": ("certificates.k8s.io/v1", "certificatesigningrequests", False),
    "Role": ("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "SubjectAccessReview": ("authorization.k8s.io/v1", "subjectaccessreviews", False),
    "PriorityClass": ("scheduling.k8s.io/v1", "priorityclasses", False),
}


def path_for(
    kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    gv, plural, namespaced = PATHS[kind]
    base = "/api/v1" if gv == "v1" else f"/apis/{gv}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if sub:
        base += f"/{sub}"
    return base


class Client:
    def __init__(
        self,
        server: str,
        ca_pem: bytes | None = None,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        token: str | None = None,
        verify: bool = True,
        timeout: float = 10.0,
        connect_to: str | None = None,
        retry_for: float = 0.0,
    ):
        u = urllib.parse.urlsplit(server)
        self.host, self.port = u.hostname, u.port or 443
        # Connect to this address but speak TLS to (and verify) the server's name, like a
        # container whose /etc/hosts maps that name (pod hostAliases).
        self.connect_to = connect_to
        # Seconds to keep retrying a request that failed on the way (connection refused or
        # reset, timeout, 429/5xx), as kubeadm's apiclient helpers poll for up to the
        # kubernetesAPICall timeout; 0 = fail at once.
        self.retry_for = retry_for
        self.token = token
        self.timeout = timeout
        self.ctx: ssl.SSLContext = tlsutil.client_context(ca_pem, cert_pem, key_pem, verify)
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path: str, **kw) -> Client:
        c = Credentials.from_file(path)
        return cls(c.server, c.ca_pem, c.cert_pem, c.key_pem, c.token, verify=not c.insecure, **kw)

    def _conn(self, timeout: float | None = None) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.ctx, timeout=timeout or self.timeout
        )
        if self.connect_to:
            address = self.connect_to

            def create_connection(addr, *args, **kwargs):
                return socket.create_connection((address, addr[1]), *args, **kwargs)

            conn._create_connection = create_connection
        return conn

    def request(
        self,
        method: str,
        path: str,
        body=None,
        params: dict | None = None,
        content_type: str = "application/json",
    ) -> dict:
        if params:
            path += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Accept": "application/json", "User-Agent": "k8sboot-lab-standin"}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                return self._request_once(method, path, data, headers)
            except (OSError, http.client.HTTPException, ApiError) as e:
                transient = not isinstance(e, ApiError) or e.status in TRANSIENT_STATUS
                if not transient or time.monotonic() + RETRY_INTERVAL > deadline:
                    raise
            time.sleep(RETRY_INTERVAL)

    def _request_once(self, method: str, path: str, data: bytes | None, headers: dict) -> dict:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        self._local.conn, resp, raw = tlsutil.exchange(
            conn, self._conn, method, path, data, headers
        )
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"message": raw.decode(errors="replace")}
        if resp.status >= 400:
            err = {404: NotFound, 409: Conflict}.get(resp.status, ApiError)
            raise err(resp.status, payload)
        return payload

    # --- conveniences ---------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        return self.request("GET", path_for(kind, namespace, name))

    def get_or_none(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.get(kind, name, namespace)
        except NotFound:
            return None

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict]:
        out = self.request(
            "GET",
            path_for(kind, namespace),
            params={"labelSelector": label_selector, "fieldSelector": field_selector},
        )
        return out.get("items") or []

    def create(self, obj: dict) -> dict:
        ns = obj.get("metadata", {}).get("namespace")
        return self.request("POST", path_for(obj["kind"], ns), obj)

    def update(self, obj: dict, sub: str | None = None) -> dict:
        md = obj["metadata"]
        return self.request("PUT", path_for(obj["kind"], md.get("namespace"), md["name"], sub), obj)

    def patch(
        self,
        kind: str,
        name: str,
        patch: dict,
        namespace: str | None = None,
        sub: str | None = None,
        patch_type: str = "merge",
    ) -> dict:
        ctype = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        return self.request(
            "PATCH", path_for(kind, namespace, name, sub), patch, content_type=ctype
        )

    def delete(
        self, kind: str, name: str, namespace: str | None = None, body: dict | None = None
    ) -> dict:
        return self.request("DELETE", path_for(kind, namespace, name), body)

    def create_or_update(self, obj: dict, attempts: int = 5) -> dict:
        """Create, or replace what exists (kubeadm's apiclient.CreateOrUpdate*). A conflict
        on the update (someone else's write, or our own retried write that had landed) means
        read again and replace again."""
        md = obj["metadata"]
        for attempt in range(attempts):
            try:
                return self.create(obj)
            except Conflict as e:
                if e.reason != "AlreadyExists":
                    raise
            current = self.get(obj["kind"], md["name"], md.get("namespace"))
            body = dict(
                obj, metadata=dict(md, resourceVersion=current["metadata"]["resourceVersion"])
            )
            try:
                return self.update(body)
            except Conflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str = "",
        timeout: int = 60,
        field_selector: str | None = None,
    ) -> Iterator[dict]:
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout),
            "fieldSelector": field_selector,
        }
        path = (
            path_for(kind, namespace)
            + "?"
            + urllib.parse.urlencode({k: v for k, v in params.items() if v})
        )
        conn = self._conn(timeout + 10)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status >= 400:
            raise ApiError(resp.status, json.loads(resp.read() or b"{}"))
        try:
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()
