"""Several "machines" on one host for the stand-ins: each node is a directory used as its
root (K8SBOOT_STANDIN_ROOT), a loopback address as its node IP (127.0.1.N), a listening
socket standing in for containerd, and a supervised kubelet stand-in."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import yaml

LAB = Path(__file__).resolve().parents[1] / "lab"
FAKE_SYSTEMCTL = Path(__file__).resolve().parent / "fake_systemctl.py"
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def pythonpath() -> str:
    """The stand-ins' source tree first, then whatever PYTHONPATH the tests run with (e.g.
    Debian bookworm's cryptography 38 and PyYAML 6.0, to run the stand-ins as lab machines
    would: see tests/lab/standins/README.md)."""
    return os.pathsep.join(filter(None, [str(LAB), os.environ.get("PYTHONPATH", "")]))


def kubectl_path(minor: int) -> str:
    p = KUBECTL_DIR / f"kubectl.1.{minor}"
    return str(p) if p.exists() else "kubectl"


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

    def env(self) -> dict:
        return dict(
            os.environ,
            K8SBOOT_STANDIN_ROOT=str(self.root),
            PYTHONPATH=pythonpath(),
            K8SBOOT_STANDIN_VERSION=self.version,
            K8SBOOT_STANDIN_KUBELET_HEALTHZ_PORT=str(self.healthz_port),
            K8SBOOT_STANDIN_SYSTEMCTL=f"{sys.executable} {FAKE_SYSTEMCTL} {self.root}",
        )

    def kubeadm(
        self, *args: str, timeout: float = 180, check: bool = False
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [sys.executable, "-m", "standins.kubeadm", *args],
            cwd=LAB,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
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
