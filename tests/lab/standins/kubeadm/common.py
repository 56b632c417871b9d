"""Helpers shared by init, join, reset and the small commands."""

from __future__ import annotations

import contextlib
import sys
import time

import yaml

from .. import kubeconfig, pki, versions
from ..client import ApiError, Client
from ..etcd import Etcd
from ..paths import ADMIN_CONF, host
from .config import cluster_from_configmap
from .errors import KubeadmError


def log(msg: str = "") -> None:
    print(msg, flush=True)


def klog_warn(msg: str) -> None:
    print(f"W{time.strftime('%m%d %H:%M:%S')}.000000       1 {msg}", file=sys.stderr, flush=True)


# kubeadm's kubernetesAPICall timeout: its apiclient helpers retry failed calls this long,
# which carries them over a control-plane endpoint that moves (kube-vip restarting).
API_CALL_RETRY = 60.0


def admin_client(
    path: str = ADMIN_CONF, timeout: float = 10, retry_for: float = API_CALL_RETRY
) -> Client:
    try:
        return Client.from_kubeconfig(path, timeout=timeout, retry_for=retry_for)
    except FileNotFoundError:
        raise KubeadmError(
            f"failed to load admin kubeconfig: open {path}: no such file or directory"
        ) from None


def read_cluster_config(client: Client) -> dict:
    cm = client.get("ConfigMap", "kubeadm-config", "kube-system")
    return cluster_from_configmap(cm.get("data") or {})


def etcd_client_from_cluster(client: Client, pki_dir: str) -> Etcd:
    """Endpoints from the etcd Pods' advertise-client-urls annotation, as kubeadm finds them."""
    pods = client.list("Pod", "kube-system", label_selector="component=etcd,tier=control-plane")
    eps = sorted(
        {
            p["metadata"]
            .get("annotations", {})
            .get("kubeadm.kubernetes.io/etcd.advertise-client-urls")
            for p in pods
        }
        - {None}
    )
    if not eps:
        raise KubeadmError(
            "could not retrieve the list of etcd endpoints: etcd Pods were not "
            "found in the kube-system namespace"
        )

    def rd(p):
        with open(host(p), "rb") as f:
            return f.read()

    return Etcd(
        eps,
        rd(f"{pki_dir}/etcd/ca.crt"),
        rd(f"{pki_dir}/apiserver-etcd-client.crt"),
        rd(f"{pki_dir}/apiserver-etcd-client.key"),
    )


def wait_for(what: str, fn, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            out = fn()
            if out:
                return out
        except (ApiError, OSError, KubeadmError) as e:
            last = e
        time.sleep(interval)
    raise KubeadmError(f"timed out waiting for {what}" + (f": {last}" if last else ""))


def mark_control_plane(client: Client, node_name: str, taints: list[dict], timeout: float) -> None:
    labels = [
        "node-role.kubernetes.io/control-plane",
        "node.kubernetes.io/exclude-from-external-load-balancers",
    ]
    log(
        f"[mark-control-plane] Marking the node {node_name} as control-plane by adding the labels: "
        f"[{' '.join(labels)}]"
    )
    if taints:
        log(
            f"[mark-control-plane] Marking the node {node_name} as control-plane by adding the "
            f"taints [{' '.join(t['key'] + ':' + t['effect'] for t in taints)}]"
        )

    def patch():
        node = client.get("Node", node_name)
        for lb in labels:
            node["metadata"].setdefault("labels", {})[lb] = ""
        have = node["spec"].get("taints") or []
        for t in taints:
            if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in have):
                have.append({k: v for k, v in t.items() if k in ("key", "value", "effect")})
        if have:
            node["spec"]["taints"] = have
        client.update(node)
        return True

    wait_for(f'the Node "{node_name}"', patch, timeout)


def write_cluster_info(client: Client, cluster: dict, server: str) -> None:
    with open(host(f"{cluster['certificatesDir']}/ca.crt"), "rb") as f:
        ca = f.read()
    kc = kubeconfig.build("", server, ca, "")
    kc = {
        "apiVersion": "v1",
        "clusters": kc["clusters"],
        "contexts": None,
        "current-context": "",
        "kind": "Config",
        "preferences": {},
        "users": None,
    }
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": yaml.safe_dump(kc, sort_keys=False)},
    }
    existing = None
    with contextlib.suppress(ApiError):
        existing = client.get("ConfigMap", "cluster-info", "kube-public")
    if existing:
        # Keep the signatures the bootstrap signer added.
        body["data"].update(
            {
                k: v
                for k, v in (existing.get("data") or {}).items()
                if k.startswith("jws-kubeconfig-")
            }
        )
    client.create_or_update(body)


def pause_image(cluster: dict) -> str:
    repo = cluster.get("imageRepository", "registry.k8s.io")
    return f"{repo}/pause:{versions.PAUSE_TAG[versions.minor(cluster['kubernetesVersion'])]}"


def ca_pem(pki_dir: str) -> bytes:
    with open(host(f"{pki_dir}/ca.crt"), "rb") as f:
        return f.read()


def read_cert(path: str):
    with open(host(path), "rb") as f:
        return pki.load_cert(f.read())
