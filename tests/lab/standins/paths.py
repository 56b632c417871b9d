"""Where things live on a node, as upstream kubeadm and kubelet put them.

K8SBOOT_STANDIN_ROOT moves every file path under another directory. It exists ONLY for the
host-side tests (tests/standins), which run several "nodes" on one machine; lab machines
and packages never set it, so the root is "/".
"""

from __future__ import annotations

import os

ROOT = os.environ.get("K8SBOOT_STANDIN_ROOT") or "/"
TEST_MODE = ROOT != "/"

KUBERNETES_DIR = "/etc/kubernetes"
PKI_DIR = "/etc/kubernetes/pki"
MANIFESTS_DIR = "/etc/kubernetes/manifests"
KUBELET_DIR = "/var/lib/kubelet"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
KUBELET_FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_PKI = "/var/lib/kubelet/pki"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
BOOTSTRAP_KUBELET_CONF = "/etc/kubernetes/bootstrap-kubelet.conf"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
SUPER_ADMIN_CONF = "/etc/kubernetes/super-admin.conf"
ETCD_DATA_DIR = "/var/lib/etcd"
CNI_CONF_DIR = "/etc/cni/net.d"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


def host(path: str) -> str:
    """The real location of an upstream path (unchanged outside tests)."""
    if not TEST_MODE or not path.startswith("/"):
        return path
    return os.path.join(ROOT, path.lstrip("/"))


def rehost_arg(arg: str) -> str:
    """Rewrite `--flag=/abs/path` for test roots; used for programs that know no root."""
    if not TEST_MODE or not arg.startswith("--") or "=" not in arg:
        return arg
    flag, value = arg.split("=", 1)
    if value.startswith(("/etc/", "/var/lib/")):
        return f"{flag}={host(value)}"
    return arg
