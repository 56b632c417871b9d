"""Release files k8sboot fetches itself (the Tigera operator's manifest): refused unless
their sha256 is the pinned one."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from k8sboot.cluster.cni import fetch_checked
from k8sboot.errors import MachineError


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "operator.yaml").write_text("kind: Namespace\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_file_with_its_pinned_sha256_is_fetched(served: str) -> None:
    sha = hashlib.sha256(b"kind: Namespace\n").hexdigest()
    assert fetch_checked(f"{served}/operator.yaml", sha) == b"kind: Namespace\n"


def test_another_file_or_none_is_refused(served: str) -> None:
    with pytest.raises(MachineError, match=r"expected 0000.*not applied"):
        fetch_checked(f"{served}/operator.yaml", "0" * 64)
    with pytest.raises(MachineError, match="cannot fetch"):
        fetch_checked(f"{served}/missing.yaml", "0" * 64)
