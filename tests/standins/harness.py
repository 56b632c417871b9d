"""Several "machines" on one host for the stand-ins: each node is a directory used as its
root (K8SBOOT_STANDIN_ROOT), a loopback address as its node IP (127.0.1.N), a listening
socket standing in for containerd, and a supervised kubelet stand-in.

Also, for the tests that drive the API server stand-in in-process: a real etcd on free
loopback ports (`etcd_server`) and the stand-in API server over a registry with its PKI, a
cluster-admin kubeconfig and a client SSL context (`api_server`)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.lab.standins import pki
from tests.lab.standins.apiserver import auth
from tests.lab.standins.apiserver.registry import Registry
from tests.lab.standins.apiserver.server import ApiServer
from tests.lab.standins.etcd import Etcd, EtcdError

LAB = Path(__file__).resolve().parents[1] / "lab"
FAKE_SYSTEMCTL = Path(__file__).resolve().parent / "fake_systemctl.py"
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def pythonpath() -> str:
    """The stand-ins' source tree first, then whatever PYTHONPATH the tests run with (e.g.
    Debian bookworm's cryptography 38 and PyYAML 6.0, to run the stand-ins as lab machines
    would: see tests/lab/standins/README.md)."""
    return os.pathsep.join(filter(None, [str(LAB), os.environ.get("PYTHONPATH", "")]))


def standin_env(tmp_path: Path, version: str) -> dict[str, str]:
    """The environment a stand-in command runs in: its root under tmp_path, its version."""
    return dict(
        os.environ,
        K8SBOOT_STANDIN_ROOT=str(tmp_path / "root"),
        K8SBOOT_STANDIN_VERSION=version,
        PYTHONPATH=pythonpath(),
    )


def kubectl_path(minor: int) -> str:
    p = KUBECTL_DIR / f"kubectl.1.{minor}"
    return str(p) if p.exists() else "kubectl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def etcd_server(directory: Path, name: str) -> Iterator[Etcd]:
    """A one-member etcd (the `etcd` on PATH) on two free loopback ports, its data and its
    log (etcd.log, the failure message if it does not answer within 30 s) in `directory`."""
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    with open(directory / "etcd.log", "wb") as log:
        proc = subprocess.Popen(
            [
                "etcd",
                f"--name={name}",
                f"--data-dir={directory / 'data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster={name}={peer}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        store = Etcd([client], timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                store.revision()
                break
            except EtcdError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError((directory / "etcd.log").read_text()) from None
                time.sleep(0.2)
        try:
            yield store
        finally:
            proc.terminate()
            proc.wait(10)


def write_admin_pki(directory: Path, ca_name: str) -> tuple[bytes, bytes, bytes]:
    """A new CA and, signed by it, a serving certificate for 127.0.0.1 and a cluster-admin
    (O=system:masters) client certificate, written to `directory` as ca.crt,
    apiserver.crt/.key and admin.crt/.key. Returns the PEMs of the CA, the admin
    certificate and the admin key (and ca.key, for what signs as the cluster CA)."""
    ca, ca_key = pki.new_ca(ca_name)
    serving, serving_key = pki.sign(
        pki.CertSpec("apiserver", server=True, ips=["127.0.0.1"]), ca, ca_key
    )
    admin, admin_key = pki.sign(
        pki.CertSpec("admin", orgs=("system:masters",), client=True), ca, ca_key
    )
    pems = {
        "ca.crt": pki.cert_pem(ca),
        "ca.key": pki.key_pem(ca_key),  # for what signs with the cluster CA (kubeadm)
        "apiserver.crt": pki.cert_pem(serving),
        "apiserver.key": pki.key_pem(serving_key),
        "admin.crt": pki.cert_pem(admin),
        "admin.key": pki.key_pem(admin_key),
    }
    for name, data in pems.items():
        (directory / name).write_bytes(data)
    return pems["ca.crt"], pems["admin.crt"], pems["admin.key"]


def admin_kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> dict:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": b64(cert_pem),
                    "client-key-data": b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "admin"}}],
        "current-context": "c",
    }


@contextlib.contextmanager
def api_server(
    registry: Registry, directory: Path, ca_name: str = "test-ca", version: str = "v1.33.1"
) -> Iterator[tuple[int, Path, ssl.SSLContext]]:
    """The API server stand-in over `registry` on a free loopback port (127.0.0.1), served
    from a thread until the block ends. Its PKI (`write_admin_pki`) and a cluster-admin
    kubeconfig, admin.conf, are written to `directory`. Yields the port, the kubeconfig's
    path and an SSL context that trusts the CA and presents the admin certificate."""
    ca_pem, admin_pem, admin_key_pem = write_admin_pki(directory, ca_name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(directory / "apiserver.crt", directory / "apiserver.key")
    ctx.load_verify_locations(directory / "ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    authorizer = auth.Authorizer(lambda r, ns: registry.list(r, ns)[0])
    server = ApiServer(("127.0.0.1", 0), registry, authorizer, ctx, lambda: True, version)
    server.quiet = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
    ).start()
    try:
        port = server.server_address[1]
        kubeconfig = directory / "admin.conf"
        config = admin_kubeconfig(f"https://127.0.0.1:{port}", ca_pem, admin_pem, admin_key_pem)
        kubeconfig.write_text(yaml.safe_dump(config))
        client_ctx = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        client_ctx.load_cert_chain(directory / "admin.crt", directory / "admin.key")
        yield port, kubeconfig, client_ctx
    finally:
        server.shutdown()
        server.server_close()


class FakeContainerd:
    """A unix socket that accepts connections, like containerd's for a liveness probe."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(64)
        self.path = path
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                return

    def close(self):
        self.sock.close()
        self.path.unlink(missing_ok=True)


class Node:
    def __init__(self, base: Path, name: str, ip: str, healthz_port: int, version: str):
        self.name, self.ip, self.healthz_port = name, ip, healthz_port
        self.root = base / name
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
        self.containerd = FakeContainerd(self.root / "run/containerd/containerd.sock")
        self.version = version

    def env(self, version: str | None = None) -> dict:
        return dict(
            os.environ,
            K8SBOOT_STANDIN_ROOT=str(self.root),
            PYTHONPATH=pythonpath(),
            K8SBOOT_STANDIN_VERSION=version or self.version,
            K8SBOOT_STANDIN_KUBELET_HEALTHZ_PORT=str(self.healthz_port),
            K8SBOOT_STANDIN_SYSTEMCTL=f"{sys.executable} {FAKE_SYSTEMCTL} {self.root}",
        )

    def kubeadm(
        self,
        *args: str,
        timeout: float = 180,
        check: bool = False,
        version: str | None = None,
        stdin: str = "",
    ) -> subprocess.CompletedProcess:
        """kubeadm on this node; `version`: that of a kubeadm package installed since."""
        p = subprocess.run(
            [sys.executable, "-m", "standins.kubeadm", *args],
            cwd=LAB,
            env=self.env(version),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"kubeadm {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
            )
        return p

    def write(self, name: str, docs: list[dict]) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    def restart_kubelet(self, version: str) -> None:
        """`systemctl restart kubelet` after the kubelet package of `version` was installed."""
        self.version = version
        subprocess.run(
            [sys.executable, str(FAKE_SYSTEMCTL), str(self.root), "restart", "kubelet"],
            env=self.env(),
            check=True,
        )

    def stop_kubelet(self) -> None:
        subprocess.run(
            [sys.executable, str(FAKE_SYSTEMCTL), str(self.root), "stop", "kubelet"], check=False
        )

    def kubelet_log(self) -> str:
        try:
            return (self.root / "kubelet.log").read_text()[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        self.stop_kubelet()
        self.containerd.close()


def kill_strays(root: Path) -> None:
    """Any process still running with a test root in its environment (belt and braces)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"K8SBOOT_STANDIN_ROOT={root}".encode() in env:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


def init_config(node: Node, api: str, minor: int, cert_sans: list[str] | None = None) -> list[dict]:
    v4 = api.endswith("v1beta4")
    args = (lambda d: [{"name": k, "value": v} for k, v in d.items()]) if v4 else (lambda d: d)
    return [
        {
            "apiVersion": api,
            "kind": "InitConfiguration",
            "bootstrapTokens": [{"description": "init only", "ttl": "15m0s"}],
            "localAPIEndpoint": {"advertiseAddress": node.ip, "bindPort": 6443},
            "nodeRegistration": {
                "name": node.name,
                "criSocket": "unix:///run/containerd/containerd.sock",
                "kubeletExtraArgs": args({"node-ip": node.ip}),
            },
        },
        {
            "apiVersion": api,
            "kind": "ClusterConfiguration",
            "clusterName": "hostlab",
            "kubernetesVersion": node.version,
            "controlPlaneEndpoint": f"{node.ip}:6443",
            "networking": {
                "podSubnet": "10.244.0.0/16",
                "serviceSubnet": "10.96.0.0/12",
                "dnsDomain": "cluster.local",
            },
            "apiServer": {
                "certSANs": cert_sans or ["k8s.lab.internal"],
                "extraArgs": args({"bind-address": node.ip}),
            },
            "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
        },
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "systemd",
            "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        },
    ]


def join_config(
    node: Node,
    api: str,
    endpoint: str,
    token: str,
    ca_hash: str,
    control_plane_key: str | None = None,
) -> list[dict]:
    v4 = api.endswith("v1beta4")
    extra = [{"name": "node-ip", "value": node.ip}] if v4 else {"node-ip": node.ip}
    doc = {
        "apiVersion": api,
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": endpoint,
                "token": token,
                "caCertHashes": [ca_hash],
            }
        },
        "nodeRegistration": {
            "name": node.name,
            "criSocket": "unix:///run/containerd/containerd.sock",
            "kubeletExtraArgs": extra,
        },
    }
    if control_plane_key is not None:
        doc["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": node.ip, "bindPort": 6443},
            "certificateKey": control_plane_key,
        }
    return [doc]


def nodes_ready(cluster) -> dict[str, str]:
    """Each Node's Ready condition, through the cluster's kubectl."""
    items = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {
        n["metadata"]["name"]: next(
            c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready"
        )
        for n in items
    }
