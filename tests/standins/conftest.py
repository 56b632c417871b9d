"""Host-side tests of the Kubernetes stand-ins (no lab machines).

Tests marked `lab` run a real etcd (Debian's etcd-server) and the stand-ins on loopback
addresses 127.0.1.x with the usual ports (6443, 2379, 2380, 2381, 10248+, 10257, 10259):
they are skipped when etcd is missing or a port is taken, unless K8SBOOT_LAB_REQUIRED=1
(CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.standins.client import Client

from .harness import (
    Node,
    etcd_server,
    init_config,
    join_config,
    kill_strays,
    kubectl_path,
    nodes_ready,
)

REQUIRED = os.environ.get("K8SBOOT_LAB_REQUIRED") == "1"
PORTS = [
    ("127.0.1.1", 6443),
    ("127.0.0.1", 2379),
    ("127.0.1.1", 2380),
    ("127.0.0.1", 2381),
    ("127.0.0.1", 10248),
    ("127.0.0.1", 10257),
    ("127.0.0.1", 10259),
]


def _unavailable() -> str | None:
    if not shutil.which("etcd"):
        return "etcd is not installed (apt-get install etcd-server etcd-client)"
    for host, port in PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return f"{host}:{port} is in use"
        finally:
            s.close()
    return None


class HostCluster:
    def __init__(self, base: Path, version: str):
        self.base, self.version = base, version
        minor = int(version.split(".")[1])
        self.minor = minor
        self.api = "kubeadm.k8s.io/v1beta4" if minor >= 31 else "kubeadm.k8s.io/v1beta3"
        self.nodes: dict[str, Node] = {}
        self.cp = self.add("cp1", "127.0.1.1", 10248)
        self.kubeconfig = str(self.cp.root / "etc/kubernetes/admin.conf")
        self.init_output = ""

    def add(self, name: str, ip: str, port: int) -> Node:
        node = Node(self.base, name, ip, port, self.version)
        self.nodes[name] = node
        return node

    def client(self) -> Client:
        return Client.from_kubeconfig_real(self.kubeconfig)

    def kubectl(
        self, *args: str, minor: int | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [kubectl_path(minor or self.minor), "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
            )
        return p

    def token_and_hash(self) -> tuple[str, str]:
        out = self.cp.kubeadm(
            "token", "create", "--ttl", "10m", "--print-join-command", check=True
        ).stdout.split()
        return out[out.index("--token") + 1], out[out.index("--discovery-token-ca-cert-hash") + 1]

    def join_worker(self, name: str, ip: str, port: int, ignored: tuple[str, ...] = ()) -> Node:
        """A worker joined; `ignored` are more preflight errors to pass over (kubeadm checks
        the kubelet's usual port, which the second worker's kubelet holds)."""
        node = self.add(name, ip, port)
        token, ca_hash = self.token_and_hash()
        cfg = node.write(
            "join.yaml", join_config(node, self.api, f"{self.cp.ip}:6443", token, ca_hash)
        )
        node.kubeadm(
            "join",
            "--config",
            str(cfg),
            "--ignore-preflight-errors="
            + ",".join(["FileContent--proc-sys-net-ipv4-ip_forward", *ignored]),
            check=True,
        )
        return node

    def wait(self, what: str, fn, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = fn()
            if out:
                return out
            time.sleep(0.5)
        logs = "\n".join(
            f"--- {n.name} kubelet ---\n{n.kubelet_log()}" for n in self.nodes.values()
        )
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()
        for node in self.nodes.values():
            kill_strays(node.root)


def _from_kubeconfig_real(path: str) -> Client:
    """Client for a kubeconfig path on this machine (not under a test root)."""
    import yaml

    from tests.lab.standins.kubeconfig import Credentials

    with open(path) as f:
        creds = Credentials(yaml.safe_load(f))
    return Client(creds.server, creds.ca_pem, creds.cert_pem, creds.key_pem, creds.token)


Client.from_kubeconfig_real = staticmethod(_from_kubeconfig_real)


def start_cluster(tmp: Path, version: str, workers: int) -> HostCluster:
    reason = _unavailable()
    if reason:
        if REQUIRED:
            pytest.fail(f"stand-in cluster cannot start: {reason}")
        pytest.skip(reason)
    cluster = HostCluster(tmp, version)
    try:
        cfg = cluster.cp.write("init.yaml", init_config(cluster.cp, cluster.api, cluster.minor))
        out = cluster.cp.kubeadm(
            "init",
            "--config",
            str(cfg),
            "--upload-certs",
            "--ignore-preflight-errors=FileContent--proc-sys-net-ipv4-ip_forward",
            check=True,
        )
        cluster.init_output = out.stdout
        for i in range(workers):
            cluster.join_worker(f"w{i + 1}", f"127.0.1.{i + 2}", 10249 + i)
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    version = getattr(request.module, "KUBERNETES_VERSION", "v1.33.1")
    workers = getattr(request.module, "WORKERS", 2)
    c = start_cluster(tmp_path_factory.mktemp("hostlab"), version, workers=workers)
    yield c
    c.close()


@pytest.fixture(scope="module")
def cni(cluster, tmp_path_factory):
    """Apply flannel as k8sboot does; the kubelets install its CNI config from the ConfigMap,
    and every node turns Ready."""
    import json

    import jinja2

    src = Path(__file__).resolve().parents[2] / "templates/cni/flannel.yaml.j2"
    env = jinja2.Environment()
    env.filters["q"] = lambda s: json.dumps(str(s))
    text = env.from_string(src.read_text()).render(
        flannel_version="v0.26.1",
        flannel_cni_plugin_version="v1.5.1-flannel2",
        pod_subnet="10.244.0.0/16",
    )
    path = tmp_path_factory.mktemp("cni") / "flannel.yaml"
    path.write_text(text)
    cluster.kubectl("apply", "-f", str(path))
    cluster.wait(
        f"{len(cluster.nodes)} Ready nodes",
        lambda: (
            (ready := nodes_ready(cluster)).keys() == cluster.nodes.keys()
            and set(ready.values()) == {"True"}
        ),
    )
    return path


@pytest.fixture(scope="module")
def etcd(tmp_path_factory, request):
    """A real etcd on free loopback ports for the module (`harness.etcd_server`), its member
    named after the module (test_crds: crds)."""
    if not shutil.which("etcd"):
        if REQUIRED:
            pytest.fail("etcd is not installed (apt-get install etcd-server)")
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with etcd_server(tmp_path_factory.mktemp(f"{name}-etcd"), name) as store:
        yield store
