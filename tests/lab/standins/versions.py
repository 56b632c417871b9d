"""The Kubernetes version a package was built for, and what upstream pairs with each minor."""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

BUILD_INFO = Path(__file__).parent / "_build.json"
DEFAULT_VERSION = "v1.33.1"

# Image tags kubeadm of each minor writes into manifests. For etcd the lab differs: the
# kubelet stand-in runs the machine's etcd (Debian 13's 3.5.16), so kubeadm names that
# version, and what the manifest says is what runs (see etcd_tag).
ETCD_TAG = {30: "3.5.15-0", 31: "3.5.15-0", 32: "3.5.16-0", 33: "3.5.21-0"}
PAUSE_TAG = {30: "3.9", 31: "3.10", 32: "3.10", 33: "3.10"}
COREDNS_TAG = {30: "v1.11.3", 31: "v1.11.3", 32: "v1.11.3", 33: "v1.12.0"}
SUPPORTED_MINORS = (30, 31, 32, 33)


def kubernetes_version() -> str:
    """`v1.33.1`: K8SBOOT_STANDIN_VERSION (the kubelet stand-in sets it from a static pod's
    image tag), else the package's build info, else the default."""
    if os.environ.get("K8SBOOT_STANDIN_VERSION"):
        return os.environ["K8SBOOT_STANDIN_VERSION"]
    return _built_version()


@cache
def _built_version() -> str:
    """Read once per process: an upstream binary reports the version it was built with
    (component-base/version) until it is restarted, so a kubelet whose package was upgraded
    under it keeps reporting the old version."""
    if BUILD_INFO.exists():
        return json.loads(BUILD_INFO.read_text())["kubernetesVersion"]
    return DEFAULT_VERSION


def etcd_tag(kubernetes_version: str) -> str:
    """The etcd image tag kubeadm writes: `<version>-0` of the etcd binary the kubelet
    stand-in will run, else upstream's tag for the minor (no etcd on this machine)."""
    try:
        shown = subprocess.run(
            ["etcd", "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        shown = ""
    found = re.search(r"etcd Version: (\d+\.\d+\.\d+)", shown)
    return f"{found.group(1)}-0" if found else ETCD_TAG[minor(kubernetes_version)]


def minor(version: str | None = None) -> int:
    return int((version or kubernetes_version()).lstrip("v").split(".")[1])


def kubeadm_api_versions(m: int) -> tuple[str, ...]:
    """kubeadm config API versions a kubeadm of minor `m` accepts (newest first)."""
    return (
        ("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3")
        if m >= 31
        else ("kubeadm.k8s.io/v1beta3",)
    )


def git_version_info(version: str | None = None) -> dict:
    v = version or kubernetes_version()
    major, mnr = v.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": mnr,
        "gitVersion": v,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0 (k8sboot lab stand-in)",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
