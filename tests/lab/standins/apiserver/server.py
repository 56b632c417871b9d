"""The HTTPS front: routing, authentication, authorization, content negotiation, watch."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import versions
from . import auth, errors, openapi, protobuf, tables
from .crds import sort_versions
from .registry import Registry
from .registry import builtin_kind as _builtin_kind
from .resources import BY_GV_PLURAL, RESOURCES, group_versions, resource_list
from .selectors import field_matcher, label_matcher

NON_STORED_CREATE = {"subjectaccessreviews", "selfsubjectaccessreviews", "selfsubjectreviews"}
MAX_BODY = 16 * 1024 * 1024


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address,
        registry: Registry,
        authorizer: auth.Authorizer,
        ssl_ctx: ssl.SSLContext,
        etcd_ok,
        version: str,
    ):
        self.registry = registry
        self.authorizer = authorizer
        self.ssl_ctx = ssl_ctx
        self.etcd_ok = etcd_ok
        self.version = version
        self.started = time.time()
        self.shutting_down = False
        super().__init__(address, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def log_message(self, fmt, *args):  # one line per request on stderr, like -v=2 logs
        if getattr(self.server, "quiet", False):
            return
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def setup(self):
        super().setup()
        try:
            self.connection.settimeout(30)
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            self.close_connection = True
            raise

    # --- plumbing ---------------------------------------------------------------------------
    def _send_json(
        self, code: int, body: dict, ctype: str = "application/json", headers: dict | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _openapi_v2(self) -> None:
        """An OpenAPI v2 document without definitions (see openapi.py): kubectl validates
        objects client-side against it when the server does not advertise field validation
        for their kind (a custom kind whose CRD is not there yet), and, like upstream's,
        it has no schema for a kind nobody defined, so kubectl goes on to its "no matches
        for kind" instead of failing on a 404."""
        version = self.server.version
        if "protobuf" in self.headers.get("Accept", ""):
            data = openapi.v2_protobuf(version)
            self.send_response(200)
            self.send_header("Content-Type", openapi.V2_PROTOBUF)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        return self._send_json(200, openapi.v2_document(version))

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self._raw

    def _json_body(self) -> dict:
        raw = self._body()
        if not raw:
            return {}
        ctype = self.headers.get("Content-Type", "")
        if "protobuf" in ctype:
            return protobuf.decode(raw)
        if "cbor" in ctype:
            raise errors.StatusError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - "
                "accepted media types include: application/json, "
                "application/yaml, application/vnd.kubernetes.protobuf",
            )
        try:
            if "yaml" in ctype:
                import yaml

                return yaml.safe_load(raw) or {}
            return json.loads(raw)
        except ValueError as e:
            raise errors.bad_request(f"error decoding request body: {e}") from e

    def _user(self) -> auth.User:
        authz = self.headers.get("Authorization", "")
        if authz.lower().startswith("bearer "):
            token = authz[7:].strip()
            secrets = BY_GV_PLURAL[("v1", "secrets")]

            def get_secret(name):
                try:
                    return self.server.registry.get(secrets, "kube-system", name)
                except errors.StatusError:
                    return None

            user = auth.user_from_bootstrap_token(token, get_secret)
            if user is None:
                raise errors.unauthorized()
            return user
        try:
            cert = self.connection.getpeercert()
        except (ValueError, AttributeError):
            cert = None
        return auth.user_from_cert(cert) or auth.ANONYMOUS

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {
            k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()
        }
        path = url.path.rstrip("/") or "/"
        n = int(self.headers.get("Content-Length") or 0)
        # Read the whole body first so an early error cannot desynchronise keep-alive.
        self._raw = self.rfile.read(n) if 0 < n <= MAX_BODY else b""
        try:
            if n > MAX_BODY:
                self.close_connection = True
                raise errors.StatusError(413, "RequestEntityTooLarge", "request is too large")
            user = self._user()
            if path.startswith("/api/v1/") or (path.startswith("/apis/") and path.count("/") >= 4):
                self._resource_request(method, path, query, user)
            else:
                self._non_resource(method, path, query, user)
        except errors.StatusError as e:
            if e.code >= 500:
                traceback.print_exc()
            # Like upstream's ErrorNegotiated: a Status asking for a pause says so in a
            # header too, which client-go honours by retrying after it.
            retry = (e.details or {}).get("retryAfterSeconds")
            headers = {"Retry-After": str(retry)} if retry else None
            self._send_json(e.code, e.status(), headers=headers)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as e:
            traceback.print_exc()
            try:
                self._send_json(
                    500,
                    errors.StatusError(
                        500, "InternalError", f"Internal error occurred: {e}"
                    ).status(),
                )
            except OSError:
                self.close_connection = True

    # --- non-resource paths -----------------------------------------------------------------
    def _non_resource(self, method: str, path: str, query: dict, user: auth.User) -> None:
        self.server.authorizer.check(
            user,
            auth.Attributes(
                verb=method.lower() if method != "GET" else "get", resource_request=False, path=path
            ),
        )
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(
            ("/healthz/", "/livez/", "/readyz/")
        ):
            return self._health(path, query)
        if path == "/openapi/v2":
            return self._openapi_v2()
        if path == "/openapi/v3":
            resources = self.server.registry.all_resources()
            return self._send_json(200, openapi.root(self.server.version, resources))
        if path.startswith("/openapi/v3/"):
            doc = openapi.gv_document(
                path[len("/openapi/v3/") :],
                self.server.version,
                self.server.registry.all_resources(),
            )
            if doc:
                return self._send_json(200, doc)
        if path == "/version":
            return self._send_json(200, versions.git_version_info(self.server.version))
        if path == "/api":
            return self._send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self._server_address()}
                    ],
                },
            )
        if path == "/apis":
            groups = []
            for g, vs in self._group_versions().items():
                gvs = [{"groupVersion": f"{g}/{v}", "version": v} for v in vs]
                groups.append({"name": g, "versions": gvs, "preferredVersion": gvs[0]})
            return self._send_json(
                200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
            )
        if path == "/api/v1" or (path.startswith("/apis/") and path.count("/") == 3):
            gv = "v1" if path == "/api/v1" else path[len("/apis/") :]
            custom = self.server.registry.crds.served() if gv != "v1" else []
            body = resource_list(gv, custom)
            if body:
                return self._send_json(200, body)
        if path.startswith("/apis/") and path.count("/") == 2:
            g = path[len("/apis/") :]
            vs = self._group_versions().get(g)
            if vs:
                gvs = [{"groupVersion": f"{g}/{v}", "version": v} for v in vs]
                return self._send_json(
                    200,
                    {
                        "kind": "APIGroup",
                        "apiVersion": "v1",
                        "name": g,
                        "versions": gvs,
                        "preferredVersion": gvs[0],
                    },
                )
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
            paths += [f"/apis/{g}/{v}" for g, vs in self._group_versions().items() for v in vs]
            return self._send_json(200, {"paths": sorted(paths)})
        raise errors.StatusError(
            404, "NotFound", "the server could not find the requested resource"
        )

    def _group_versions(self) -> dict[str, list[str]]:
        """The built-in groups, then those of established CRDs: upstream lists groups by
        priority, and the APIServices made for CRD groups have the lowest (1000), so they
        come last, by name; a CRD version in a built-in group joins that group."""
        out = {g: list(vs) for g, vs in group_versions().items()}
        for g, vs in self.server.registry.crds.group_versions().items():
            if g in out:
                out[g] = out[g] + sort_versions([v for v in vs if v not in out[g]])
            else:
                out[g] = vs
        return out

    def _server_address(self) -> str:
        host, port = self.connection.getsockname()[:2]
        return f"{host}:{port}"

    def _health(self, path: str, query: dict) -> None:
        kind = path.strip("/").split("/")[0]
        checks = [("ping", True), ("log", True), ("etcd", self.server.etcd_ok())]
        if kind == "readyz":
            checks += [
                ("etcd-readiness", checks[-1][1]),
                ("informer-sync", True),
                ("poststarthook/rbac/bootstrap-roles", True),
                ("shutdown", not self.server.shutting_down),
            ]
        sub = path.strip("/").split("/", 1)[1] if "/" in path.strip("/") else None
        if sub:
            match = [c for c in checks if c[0] == sub]
            if not match:
                raise errors.StatusError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            return self._send_text(
                200 if match[0][1] else 500, "ok" if match[0][1] else "internal server error"
            )
        exclude = set(
            urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("exclude", [])
        )
        checks = [c for c in checks if c[0] not in exclude]
        ok = all(c[1] for c in checks)
        if "verbose" in query or not ok:
            lines = [
                f"[+]{n} ok" if good else f"[-]{n} failed: reason withheld" for n, good in checks
            ]
            lines.append(f"{kind} check passed" if ok else f"{kind} check failed")
            return self._send_text(200 if ok else 500, "\n".join(lines) + "\n")
        return self._send_text(200, "ok")

    # --- resource paths ---------------------------------------------------------------------
    def _lookup(self, gv: str, plural: str):
        """A built-in resource, else a custom one: the CRD `<plural>.<group>` serving this
        version (customresource_handler.go routes the same way)."""
        r = BY_GV_PLURAL.get((gv, plural))
        if r is None and "/" in gv:
            group, version = gv.split("/", 1)
            r = self.server.registry.crds.resolve(group, version, plural)
        return r

    def _parse(self, path: str):
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            gv, rest = "v1", parts[2:]
        else:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        ns = None
        r = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            r = self._lookup(gv, rest[2])
            if r is not None:
                ns, rest = rest[1], rest[2:]
        if r is None and rest:
            r = self._lookup(gv, rest[0])
        if r is None:
            raise errors.StatusError(
                404, "NotFound", "the server could not find the requested resource"
            )
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub and sub not in r.subresources:
            if r.custom:  # customresource_handler.go: NotFound for the object
                raise errors.not_found(r, name)
            raise errors.StatusError(
                404, "NotFound", "the server could not find the requested resource"
            )
        return r, ns, name, sub

    def _resource_request(self, method: str, path: str, query: dict, user: auth.User) -> None:
        r, ns, name, sub = self._parse(path)
        watch = method == "GET" and query.get("watch") in ("true", "1")
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
        if method == "GET":
            verb = "watch" if watch else ("get" if name else "list")
        elif method == "DELETE":
            verb = "delete" if name else "deletecollection"
        if r.kind == "Pod" and sub == "eviction" and not r.custom:
            verb = "create"
        if r.custom and (
            (ns is not None and not r.namespaced)
            or (ns is None and r.namespaced and verb not in ("list", "watch"))
        ):
            # customresource_handler.go: a scope mismatch goes to the delegate, a 404.
            raise errors.StatusError(
                404, "NotFound", "the server could not find the requested resource"
            )
        attrs = auth.Attributes(
            verb=verb,
            resource_request=True,
            group=r.group,
            resource=r.plural,
            subresource=sub or "",
            namespace=ns or "",
            name=name or "",
        )
        if r.kind == "Namespace" and name and not r.custom:
            attrs.namespace = name
        self.server.authorizer.check(user, attrs)
        if r.plural in NON_STORED_CREATE and not r.custom:
            return self._review(r, user)
        if r.group.startswith("rbac") and method != "GET":
            # Before and after the write: a list read while it happens must not be kept.
            self.server.authorizer.invalidate()
            try:
                return self._serve_resource(r, ns, name, sub, method, query, user, watch)
            finally:
                self.server.authorizer.invalidate()
        return self._serve_resource(r, ns, name, sub, method, query, user, watch)

    def _serve_resource(self, r, ns, name, sub, method, query, user, watch) -> None:
        reg = self.server.registry
        dry_run = query.get("dryRun") == "All"
        if method == "GET" and watch:
            return self._watch(r, ns, query)
        if method == "GET" and name:
            obj = reg.get(r, ns, name)
            return self._respond(r, 200, obj)
        if method == "GET":
            items, rev = reg.list(r, ns)
            lm, fm = (
                label_matcher(query.get("labelSelector")),
                field_matcher(query.get("fieldSelector"), _builtin_kind(r)),
            )
            items = [o for o in items if lm(o["metadata"].get("labels")) and fm(o)]
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            if self._wants_table():
                return self._send_json(
                    200, tables.to_table(r, items, str(rev), query.get("includeObject", "Metadata"))
                )
            return self._send_json(
                200,
                {
                    "kind": f"{r.kind}List",
                    "apiVersion": r.group_version,
                    "metadata": {"resourceVersion": str(rev)},
                    "items": items,
                },
            )
        if method == "POST":
            body = self._json_body()
            kind = _builtin_kind(r)
            if kind == "Pod" and sub == "eviction":
                return self._send_json(201, reg.evict(ns, name, body, dry_run))
            if (kind == "Pod" and sub == "binding") or kind == "Binding":
                target = name or body.get("metadata", {}).get("name")
                return self._send_json(201, reg.bind(ns, target, body))
            if name:
                raise errors.StatusError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            obj = reg.create(r, ns, body, user, dry_run)
            return self._respond(r, 201, obj)
        if method == "PUT":
            if not name:
                raise errors.StatusError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            obj = reg.update(r, ns, name, self._json_body(), sub, dry_run)
            return self._respond(r, 200, obj)
        if method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            # Custom resources take no strategic merge patch (customresource_handler.go
            # supportedTypes), whatever the kind is called.
            if ctype not in (
                "application/merge-patch+json",
                "application/json-patch+json",
                *(() if r.custom else ("application/strategic-merge-patch+json",)),
                "application/apply-patch+yaml",
                *(() if r.custom else ("application/apply-patch+cbor",)),
            ):
                raise errors.StatusError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - "
                    "accepted media types include: application/json-patch+json, "
                    "application/merge-patch+json, "
                    "application/apply-patch+yaml",
                )
            obj = reg.patch(r, ns, name, self._body(), ctype, sub, dry_run, user=user)
            return self._respond(r, 200, obj)
        if method == "DELETE":
            body = self._json_body()
            for k in ("gracePeriodSeconds", "propagationPolicy"):
                if k in query:
                    body[k] = int(query[k]) if k == "gracePeriodSeconds" else query[k]
            if not name:
                lm, fm = (
                    label_matcher(query.get("labelSelector")),
                    field_matcher(query.get("fieldSelector"), _builtin_kind(r)),
                )
                return self._send_json(
                    200,
                    reg.delete_collection(
                        r, ns, lambda o: lm(o["metadata"].get("labels")) and fm(o), body
                    ),
                )
            obj = reg.delete(r, ns, name, body, dry_run)
            still_there = bool(obj["metadata"].get("deletionTimestamp"))
            if _builtin_kind(r) in ("Pod", "Namespace") or still_there:
                return self._respond(r, 200, obj)
            return self._send_json(
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": r.group,
                        "kind": r.plural,
                        "uid": obj["metadata"].get("uid"),
                    },
                },
            )
        raise errors.StatusError(405, "MethodNotAllowed", "method not allowed")

    def _wants_table(self) -> bool:
        accept = self.headers.get("Accept", "")
        return "as=Table" in accept

    def _respond(self, r, code: int, obj: dict) -> None:
        if self._wants_table():
            include = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get(
                "includeObject", ["Metadata"]
            )[-1]
            return self._send_json(
                code, tables.to_table(r, [obj], obj["metadata"].get("resourceVersion", ""), include)
            )
        self._send_json(code, obj)

    def _review(self, r, user: auth.User) -> None:
        body = self._json_body()
        spec = body.get("spec") or {}
        out = dict(body, apiVersion=r.group_version, kind=r.kind)
        out.setdefault("metadata", {})["creationTimestamp"] = None
        if r.plural == "selfsubjectreviews":
            out["status"] = {"userInfo": {"username": user.name, "groups": user.groups}}
            return self._send_json(201, out)
        if r.plural == "selfsubjectaccessreviews":
            subject = user
        else:
            subject = auth.User(spec.get("user", ""), spec.get("groups") or [], spec.get("uid", ""))
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if ra:
            a = auth.Attributes(
                verb=ra.get("verb", ""),
                resource_request=True,
                group=ra.get("group", ""),
                resource=ra.get("resource", ""),
                subresource=ra.get("subresource", ""),
                namespace=ra.get("namespace", ""),
                name=ra.get("name", ""),
            )
        else:
            a = auth.Attributes(
                verb=(nra or {}).get("verb", ""),
                resource_request=False,
                path=(nra or {}).get("path", ""),
            )
        allowed = self.server.authorizer.allowed(subject, a)
        out["status"] = {"allowed": allowed}
        if allowed:
            out["status"]["reason"] = "allowed by the k8sboot lab stand-in's RBAC evaluation"
        return self._send_json(201, out)

    # --- watch ------------------------------------------------------------------------------
    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            self.connection.setblocking(False)
            try:
                data = self.connection.recv(1, socket.MSG_PEEK)
            except ssl.SSLWantReadError:
                return False
            except (ValueError, OSError):
                data = (self.connection.pending() and b"x") or b""
            finally:
                self.connection.setblocking(True)
            return data == b""
        except (OSError, ValueError):
            return True

    def _watch(self, r, ns, query: dict) -> None:
        reg = self.server.registry
        lm, fm = (
            label_matcher(query.get("labelSelector")),
            field_matcher(query.get("fieldSelector"), _builtin_kind(r)),
        )
        timeout = int(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + min(timeout, 1800)
        table = self._wants_table()
        include = query.get("includeObject", "Metadata")
        rv = query.get("resourceVersion") or ""
        initial: list[dict] = []
        if rv in ("", "0"):
            items, since = reg.list(r, ns)
            initial = [o for o in items if lm(o["metadata"].get("labels")) and fm(o)]
        else:
            since = int(rv)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

        def emit(typ: str, obj: dict) -> None:
            if table:
                obj = tables.to_table(r, [obj], obj["metadata"].get("resourceVersion", ""), include)
            self._chunk(json.dumps({"type": typ, "object": obj}).encode() + b"\n")

        for obj in initial:
            emit("ADDED", obj)
        stop = lambda: time.monotonic() > deadline or self._client_gone()  # noqa: E731
        try:
            for ev in reg.store.watch(r, ns, since, stop):
                if ev is None:
                    continue
                typ, obj = ev
                if lm(obj["metadata"].get("labels")) and fm(obj):
                    emit(typ, obj)
        except Exception as e:
            status = (
                errors.StatusError(410, "Expired", str(e)).status()
                if "compacted" in str(e)
                else errors.StatusError(500, "InternalError", str(e)).status()
            )
            with contextlib.suppress(OSError):
                self._chunk(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True


def serve_forever_in_thread(server: ApiServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


__all__ = ["RESOURCES", "ApiServer", "serve_forever_in_thread"]
