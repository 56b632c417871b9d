"""The host-side installer of etcd's release (k8sboot/probes/install_etcd.py), run for real
against a tarball served on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import pytest


def _tarball(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


RELEASE = {
    f"etcd-v3.5.99-linux-amd64/{b}": f"#!/bin/sh\necho {b} 3.5.99\n".encode()
    for b in ("etcd", "etcdctl", "etcdutl")
}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    www = tmp_path / "www"
    www.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def _install(tmp_path: Path, url: str, sha256: str, server: bool = False) -> dict:
    (tmp_path / "bin").mkdir(exist_ok=True)
    args = {
        "url": url,
        "sha256": sha256,
        "dir": str(tmp_path / "opt" / "v3.5.99"),
        "bin_dir": str(tmp_path / "bin"),
        "binaries": ["etcdctl", "etcdutl"],
        "server": server,
    }
    body = resources.files("k8sboot.probes").joinpath("install_etcd.py").read_text()
    done = subprocess.run(
        [sys.executable, "-"],
        input=f"ARGS = {args!r}\n{body}".encode(),
        capture_output=True,
        timeout=60,
    )
    if done.returncode:
        return {"error": done.stderr.decode()}
    return json.loads(done.stdout)


def test_installs_checks_links_and_is_idempotent(tmp_path: Path, served) -> None:
    url, www = served
    data = _tarball(RELEASE)
    (www / "etcd.tar.gz").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    assert _install(tmp_path, f"{url}/etcd.tar.gz", sha) == {
        "downloaded": True,
        "linked": ["etcdctl", "etcdutl"],
    }
    version_dir = tmp_path / "opt" / "v3.5.99"
    assert sorted(p.name for p in version_dir.iterdir()) == ["etcd", "etcdctl", "etcdutl"]
    assert (tmp_path / "bin" / "etcdctl").resolve() == version_dir / "etcdctl"
    assert not (tmp_path / "bin" / "etcd").exists()  # only what was asked for is linked
    out = subprocess.run([tmp_path / "bin" / "etcdutl"], capture_output=True, text=True)
    assert out.stdout == "etcdutl 3.5.99\n"
    assert _install(tmp_path, f"{url}/etcd.tar.gz", sha) == {"downloaded": False, "linked": []}
    assert [p.name for p in (tmp_path / "opt").iterdir()] == ["v3.5.99"]  # no scratch left


def test_a_tarball_with_another_checksum_is_not_installed(tmp_path: Path, served) -> None:
    url, www = served
    (www / "etcd.tar.gz").write_bytes(_tarball(RELEASE))
    done = _install(tmp_path, f"{url}/etcd.tar.gz", "0" * 64)
    assert "expected 0000" in done["error"] and "not installed" in done["error"]
    assert not (tmp_path / "opt" / "v3.5.99").exists()
    assert list((tmp_path / "bin").iterdir()) == []


def test_only_the_three_binaries_leave_the_tarball(tmp_path: Path, served) -> None:
    """A tarball naming paths outside its directory, or links, cannot place files."""
    url, www = served
    evil = {**RELEASE, "../escaped": b"x", "etcd-v3.5.99-linux-amd64/../../escaped2": b"x"}
    data = _tarball(evil)
    (www / "etcd.tar.gz").write_bytes(data)
    done = _install(tmp_path, f"{url}/etcd.tar.gz", hashlib.sha256(data).hexdigest())
    assert done["downloaded"] is True
    assert not list(tmp_path.rglob("escaped*"))
    missing = _tarball({k: v for k, v in RELEASE.items() if not k.endswith("etcdutl")})
    (www / "partial.tar.gz").write_bytes(missing)
    other = tmp_path / "other"
    other.mkdir()
    done = _install(other, f"{url}/partial.tar.gz", hashlib.sha256(missing).hexdigest())
    assert "no etcdutl in the tarball" in done["error"]
