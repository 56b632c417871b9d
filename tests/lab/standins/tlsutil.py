"""ssl contexts from PEM bytes (ssl only loads certificate chains from files), and requests
on kept-alive HTTPS connections."""

from __future__ import annotations

import http.client
import os
import ssl
import tempfile


def load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="standin-tls-") as d:
        os.chmod(d, 0o700)
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        with open(cert, "wb") as f:
            f.write(cert_pem)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)


def client_context(
    ca_pem: bytes | None,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify and ca_pem:
        ctx.load_verify_locations(cadata=ca_pem.decode())
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_pem and key_pem:
        load_chain(ctx, cert_pem, key_pem)
    return ctx


def exchange(
    conn: http.client.HTTPConnection | None,
    connect,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict,
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, bytes]:
    """`method path` on `conn`, a kept-alive connection (None: one from `connect()`); a
    connection the server closed meanwhile gets one fresh attempt. Returns the connection
    to keep for the next request, the response and its body."""
    for attempt in (0, 1):
        if conn is None:
            conn = connect()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return conn, resp, resp.read()
        except (http.client.HTTPException, ConnectionError, ssl.SSLError):
            conn.close()
            conn = None
            if attempt:
                raise
        except OSError:
            conn.close()
            raise
    raise AssertionError("unreachable")
