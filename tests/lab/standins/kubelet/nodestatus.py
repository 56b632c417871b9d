"""The Node object this kubelet registers and the status and Lease it keeps fresh."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import socket
import subprocess

from .. import versions
from ..paths import CNI_CONF_DIR, KUBELET_DIR, TEST_MODE, host


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def runtime_version() -> str:
    exe = shutil.which("containerd")
    if exe:
        try:
            out = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=5
            ).stdout
            parts = out.split()
            if len(parts) >= 3:
                return f"containerd://{parts[2]}"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "containerd://unknown"


def runtime_up(endpoint: str) -> bool:
    """containerd counts as up when its unit is active or its socket answers."""
    if not TEST_MODE and shutil.which("systemctl"):  # noqa: SIM102
        if (
            subprocess.run(
                ["systemctl", "is-active", "--quiet", "containerd"], check=False
            ).returncode
            == 0
        ):
            return True
    path = host(endpoint.removeprefix("unix://"))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def cni_ready() -> bool:
    d = host(CNI_CONF_DIR)
    try:
        return any(e.name.endswith((".conf", ".conflist", ".json")) for e in os.scandir(d))
    except OSError:
        return False


def capacity() -> dict:
    mem_kb = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    st = os.statvfs(host(KUBELET_DIR) if os.path.isdir(host(KUBELET_DIR)) else "/")
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{mem_kb}Ki",
        "pods": "110",
        "ephemeral-storage": f"{st.f_blocks * st.f_frsize // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }


def conditions(ready: bool, reason: str, message: str, previous: list[dict] | None) -> list[dict]:
    prev = {c["type"]: c for c in previous or []}
    t = now()

    def cond(typ, status, reason_, message_):
        old = prev.get(typ)
        transition = old["lastTransitionTime"] if old and old.get("status") == status else t
        return {
            "type": typ,
            "status": status,
            "lastHeartbeatTime": t,
            "lastTransitionTime": transition,
            "reason": reason_,
            "message": message_,
        }

    return [
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond(
            "Ready",
            "True" if ready else "False",
            "KubeletReady" if ready else reason,
            "kubelet is posting ready status" if ready else message,
        ),
    ]


def readiness(runtime_endpoint: str) -> tuple[bool, str, str]:
    if not runtime_up(runtime_endpoint):
        return (
            False,
            "KubeletNotReady",
            ("container runtime is down, PLEG is not healthy: container runtime is not running"),
        )
    if not cni_ready():
        return (
            False,
            "KubeletNotReady",
            (
                "container runtime network not ready: NetworkReady=false "
                "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not "
                "initialized"
            ),
        )
    return True, "KubeletReady", "kubelet is posting ready status"


def node_object(
    name: str, node_ip: str, labels: dict, taints: list[dict], runtime_endpoint: str, port: int
) -> dict:
    ready, reason, message = readiness(runtime_endpoint)
    base_labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    base_labels.update(labels)
    taints = list(taints)
    if not ready and not any(t["key"] == "node.kubernetes.io/not-ready" for t in taints):
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    spec: dict = {}
    if taints:
        spec["taints"] = taints
    cap = capacity()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": base_labels,
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": spec,
        "status": {
            "capacity": cap,
            "allocatable": dict(cap),
            "conditions": conditions(ready, reason, message, None),
            "addresses": [
                {"type": "InternalIP", "address": node_ip},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": node_info(runtime_endpoint),
            "images": [],
        },
    }


def node_info(runtime_endpoint: str) -> dict:
    machine_id = _read(host("/etc/machine-id")) or _read("/etc/machine-id")
    info = {
        "machineID": machine_id,
        "systemUUID": _read("/sys/class/dmi/id/product_uuid", machine_id),
        "bootID": _read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": platform.release(),
        "osImage": os_image(),
        "containerRuntimeVersion": runtime_version(),
        "kubeletVersion": versions.kubernetes_version(),
        "operatingSystem": "linux",
        "architecture": "amd64",
    }
    if versions.minor() < 31:
        info["kubeProxyVersion"] = versions.kubernetes_version()
    return info


def default_node_ip() -> str:
    from ..kubeadm.config import default_address

    try:
        return default_address()
    except Exception:
        return "127.0.0.1"
