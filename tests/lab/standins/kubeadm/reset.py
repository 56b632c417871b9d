"""`kubeadm reset`: remove the local etcd member through the cluster, stop the kubelet,
delete what kubeadm made; leave CNI configuration, iptables and IPVS state alone."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import urllib.parse

from ..client import ApiError
from ..etcd import EtcdError
from ..paths import ADMIN_CONF, KUBELET_CONF, KUBELET_DIR, KUBERNETES_DIR, MANIFESTS_DIR, host
from . import manifests, node
from .common import admin_client, etcd_client_from_cluster, log, read_cluster_config
from .config import default_cluster
from .errors import KubeadmError

# kubeadm's etcd client retries member changes with exponential back-off: etcd refuses them
# for a while after a member (re)started ("etcdserver: unhealthy cluster": the leader must
# have been connected to every voting member for the last 5 s).
REMOVE_BACKOFF = (0.1, 1.5, 40.0)  # first delay, factor, give up after (seconds)


def remove_member(etcd, member_id) -> None:
    delay, factor, limit = REMOVE_BACKOFF
    deadline = time.monotonic() + limit
    while True:
        try:
            etcd.member_remove(member_id)
            return
        except EtcdError as e:
            if "member not found" in str(e):
                return  # gone already (an earlier attempt landed), as kubeadm treats it
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * factor, 5.0)


def _clean_dir(path: str) -> None:
    real = host(path)
    if not os.path.isdir(real):
        return
    for entry in os.scandir(real):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)


def run(force: bool, cert_dir: str | None, ignore: list[str]) -> int:
    if not force:
        print(
            "[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' "
            "will be reverted."
        )
        ans = input("[reset] Are you sure you want to proceed? [y/N]: ")
        if ans.strip().lower() not in ("y", "yes"):
            raise KubeadmError("aborted reset operation")
    cluster: dict = {}
    client = None
    for conf in (ADMIN_CONF, KUBELET_CONF):
        if os.path.exists(host(conf)):
            try:
                client = admin_client(conf, timeout=5, retry_for=5)
                log("[reset] Reading configuration from the cluster...")
                log(
                    "[reset] FYI: You can look at this config file with 'kubectl -n kube-system "
                    "get cm kubeadm-config -o yaml'"
                )
                cluster = read_cluster_config(client)
                break
            except (ApiError, OSError, KubeadmError) as e:
                log(f"W[reset] Unable to fetch the kubeadm-config ConfigMap from cluster: {e}")
                client = None
    if not cluster:
        default_cluster(cluster)
    if cert_dir:
        cluster["certificatesDir"] = cert_dir
    log("[preflight] Running pre-flight checks")

    etcd_pod = manifests.read("etcd")
    data_dir = None
    if etcd_pod is not None:
        args = etcd_pod["spec"]["containers"][0]["command"]
        data_dir = next(
            (a.split("=", 1)[1] for a in args if a.startswith("--data-dir=")), "/var/lib/etcd"
        )
        peer = next(
            (a.split("=", 1)[1] for a in args if a.startswith("--initial-advertise-peer-urls=")), ""
        )
        try:
            if client is None:
                raise KubeadmError("no client to reach the cluster")
            etcd = etcd_client_from_cluster(client, cluster["certificatesDir"])
            members = etcd.members()
            mine = [m for m in members if peer in (m.get("peerURLs") or [])]
            if len(members) == 1 and mine:
                log(
                    "[reset] This is the only remaining etcd member in the etcd cluster, skip "
                    "removing it"
                )
            elif mine:
                # Ask another member: compare hosts exactly, never by substring.
                mine_host = urllib.parse.urlsplit(peer).hostname
                others = [
                    e for e in etcd.endpoints if urllib.parse.urlsplit(e).hostname != mine_host
                ]
                etcd.endpoints = others or etcd.endpoints
                # Upstream says nothing on success at the default verbosity.
                remove_member(etcd, mine[0]["ID"])
        except (KubeadmError, EtcdError, ApiError, OSError, StopIteration) as e:
            log(
                f"[reset] Failed to remove etcd member: {e}, Please manually remove this etcd "
                "member using etcdctl"
            )
        if data_dir:
            _clean_dir(data_dir)
            log(f"[reset] Deleted contents of the etcd data directory: {data_dir}")

    log("[reset] Stopping the kubelet service")
    node.systemctl("stop", "kubelet")
    log(f'[reset] Unmounting mounted directories in "{KUBELET_DIR}"')
    dirs = [MANIFESTS_DIR, KUBELET_DIR, cluster.get("certificatesDir", f"{KUBERNETES_DIR}/pki")]
    log(f"[reset] Deleting contents of directories: [{' '.join(dirs)}]")
    for d in dirs:
        _clean_dir(d)
    files = [
        f"{KUBERNETES_DIR}/{n}"
        for n in (
            "admin.conf",
            "super-admin.conf",
            "kubelet.conf",
            "bootstrap-kubelet.conf",
            "controller-manager.conf",
            "scheduler.conf",
        )
    ]
    log(f"[reset] Deleting files: [{' '.join(files)}]")
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            os.remove(host(f))
    log("")
    log("The reset process does not perform cleanup of CNI plugin configuration,")
    log("network filtering rules and kubeconfig files.")
    log("")
    log("For information on how to perform this cleanup manually, please see:")
    log("    https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/")
    log("")
    return 0
