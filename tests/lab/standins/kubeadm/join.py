"""`kubeadm join` for workers and control-plane nodes."""

from __future__ import annotations

import contextlib
import os
import time

import yaml

from .. import kubeconfig
from ..client import ApiError, Client
from ..etcd import EtcdError
from ..paths import BOOTSTRAP_KUBELET_CONF, KUBELET_CONF, KUBERNETES_DIR, MANIFESTS_DIR, host
from . import certs, discovery, manifests, node, preflight, uploadcerts
from .common import (
    API_CALL_RETRY,
    admin_client,
    etcd_client_from_cluster,
    log,
    mark_control_plane,
    pause_image,
)
from .config import Config, cluster_from_configmap
from .errors import KubeadmError, PhaseError


def run(cfg: Config, ignore: list[str], skip: list[str]) -> int:
    j = cfg.join
    skip = list(skip) + list(j.get("skipPhases") or [])
    cp = j.get("controlPlane")
    name = cfg.node_name
    bt = j["discovery"]["bootstrapToken"]

    def phase(p: str, fn):
        if p in skip:
            return None
        try:
            return fn()
        except PhaseError:
            raise
        except (KubeadmError, ApiError, EtcdError) as e:
            raise PhaseError(p, str(e)) from None

    def do_preflight():
        log("[preflight] Running pre-flight checks")
        checks = [
            preflight.is_root(),
            preflight.port_free(10250),
            preflight.file_available(KUBELET_CONF),
            preflight.file_available(f"{KUBERNETES_DIR}/pki/ca.crt"),
            preflight.cri(cfg.node_reg["criSocket"]),
            preflight.ip_forward(),
            *preflight.kubelet_installed(),
        ]
        if cp is not None:
            # Since 1.22 only kubeadm's own manifests must be absent (custom static pods
            # such as kube-vip may be there); worker joins do not look at the directory.
            checks += [
                preflight.file_available(f"{MANIFESTS_DIR}/{name}.yaml")
                for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
            ]
            checks += preflight.resources()
            checks += [
                preflight.port_free(p)
                for p in (int(cp["localAPIEndpoint"]["bindPort"]), 10259, 10257, 2379, 2380)
            ]
        preflight.run(checks, ignore, log)

    phase("preflight", do_preflight)

    def do_discovery():
        return discovery.discover(
            bt["apiServerEndpoint"],
            bt["token"],
            bt.get("caCertHashes") or [],
            bool(bt.get("unsafeSkipCAVerification")),
            cfg.timeout("discovery"),
            log,
        )

    ca, server = phase("preflight", do_discovery)
    tls_token = j["discovery"].get("tlsBootstrapToken") or bt["token"]
    boot = Client(server, ca, token=tls_token, retry_for=API_CALL_RETRY)

    log("[preflight] Reading configuration from the cluster...")
    log(
        "[preflight] FYI: You can look at this config file with 'kubectl -n kube-system get cm "
        "kubeadm-config -o yaml'"
    )

    def read_config():
        cm = boot.get("ConfigMap", "kubeadm-config", "kube-system")
        cfg.cluster = cluster_from_configmap(cm.get("data") or {})
        kc = boot.get("ConfigMap", "kubelet-config", "kube-system")
        return yaml.safe_load((kc.get("data") or {}).get("kubelet") or "{}")

    kubelet_doc = phase("preflight", read_config)
    cluster = cfg.cluster

    def check_node():
        try:
            existing = boot.get("Node", name)
        except ApiError as e:
            if e.status == 404:
                return
            raise
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in existing.get("status", {}).get("conditions") or []
        )
        if ready:
            raise KubeadmError(
                f'a Node with name "{name}" and status "Ready" already exists in '
                "the cluster. You must delete the existing Node or change the "
                "name of this new joining Node"
            )

    phase("preflight", check_node)

    if cp is not None:
        advertise = cp["localAPIEndpoint"]["advertiseAddress"]
        port = int(cp["localAPIEndpoint"]["bindPort"])
        if not cluster.get("controlPlaneEndpoint"):
            raise PhaseError(
                "preflight",
                "\nOne or more conditions for hosting a new control plane "
                "instance is not satisfied.\n\nunable to add a new control plane "
                "instance to a cluster that doesn't have a stable "
                "controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster "
                "has a stable controlPlaneEndpoint address.\n* The certificates that "
                "must be shared among control plane instances are provided.\n",
            )
        log(
            "[preflight] Running pre-flight checks before initializing the new control plane "
            "instance"
        )
        log("[preflight] Pulling images required for setting up a Kubernetes cluster")

        def do_download():
            key = cp.get("certificateKey")
            if not key:
                return
            uploadcerts.download(boot, cluster, key, log)

        phase("control-plane-prepare/download-certs", do_download)

        def do_certs():
            log(f'[certs] Using certificateDir folder "{cluster["certificatesDir"]}"')
            if not os.path.exists(host(f"{cluster['certificatesDir']}/ca.key")):
                raise KubeadmError(
                    "couldn't load the certificate authority: ca.key not found; "
                    "pass --certificate-key or copy the certificates"
                )
            certs.create_leaves(cluster, name, advertise, log)

        phase("control-plane-prepare/certs", do_certs)
        phase(
            "control-plane-prepare/kubeconfig",
            lambda: certs.create_kubeconfigs(
                cluster,
                name,
                advertise,
                port,
                ["admin.conf", "controller-manager.conf", "scheduler.conf"],
                log,
            ),
        )

        def do_manifests():
            log(f'[control-plane] Using manifest folder "{MANIFESTS_DIR}"')
            for comp, pod in (
                ("kube-apiserver", manifests.apiserver_pod(cluster, advertise, port)),
                ("kube-controller-manager", manifests.controller_manager_pod(cluster)),
                ("kube-scheduler", manifests.scheduler_pod(cluster)),
            ):
                log(f'[control-plane] Creating static Pod manifest for "{comp}"')
                manifests.write(comp, pod)

        phase("control-plane-prepare/control-plane", do_manifests)

    def do_kubelet_start():
        node.systemctl("stop", "kubelet")
        kubeconfig.write(
            BOOTSTRAP_KUBELET_CONF,
            kubeconfig.build(
                cluster["clusterName"], server, ca, "tls-bootstrap-token-user", token=tls_token
            ),
        )
        node.write_flags(cfg.node_reg, pause_image(cluster), cp is None, log)
        node.write_kubelet_config(node.kubelet_config(cluster, kubelet_doc), log)
        log("[kubelet-start] Starting the kubelet")
        node.systemctl("restart", "kubelet")
        node.wait_kubelet(cfg.timeout("kubeletHealthCheck"), log)
        log("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
        deadline = time.monotonic() + cfg.timeout("tlsBootstrap")
        while not os.path.exists(host(KUBELET_CONF)):
            if time.monotonic() > deadline:
                raise KubeadmError(
                    "timed out waiting for the condition: the kubelet did not "
                    "perform the TLS Bootstrap"
                )
            time.sleep(0.5)
        with contextlib.suppress(FileNotFoundError):
            os.remove(host(BOOTSTRAP_KUBELET_CONF))

    phase("kubelet-start", do_kubelet_start)

    if cp is not None:
        admin = admin_client()

        def do_etcd():
            if "local" not in cluster["etcd"]:
                return
            etcd = etcd_client_from_cluster(admin, cluster["certificatesDir"])
            peer = f"https://{advertise}:2380"
            members = etcd.members()
            if not any(peer in m.get("peerURLs", []) for m in members):
                etcd.member_add(peer, learner=True)
            log("[etcd] Announced new etcd member joining to the existing etcd cluster")
            members = etcd.members()
            initial = []
            for m in members:
                mname = m.get("name") or (name if peer in m.get("peerURLs", []) else "")
                if mname:
                    initial.append((mname, m["peerURLs"][0]))
            log('[etcd] Creating static Pod manifest for "etcd"')
            manifests.write("etcd", manifests.etcd_pod(cluster, name, advertise, initial))
            me = next(m for m in etcd.members() if peer in m.get("peerURLs", []))
            log(
                "[etcd] Waiting for the new etcd member to join the cluster. "
                "This can take up to 40s"
            )
            deadline = time.monotonic() + max(40.0, cfg.timeout("etcdAPICall"))
            while me.get("isLearner"):
                try:
                    etcd.member_promote(me["ID"])
                    break
                except EtcdError as e:
                    if time.monotonic() > deadline:
                        raise KubeadmError(f"etcdserver: could not promote member: {e}") from None
                    time.sleep(1)
                me = next(m for m in etcd.members() if peer in m.get("peerURLs", []))
            etcd.endpoints.append(f"https://{advertise}:2379")
            while True:
                try:
                    etcd.status(f"https://{advertise}:2379")
                    break
                except EtcdError:
                    if time.monotonic() > deadline:
                        raise KubeadmError(
                            "timeout waiting for etcd cluster to be available"
                        ) from None
                    time.sleep(1)

        phase("control-plane-join/etcd", do_etcd)
        phase(
            "control-plane-join/mark-control-plane",
            lambda: mark_control_plane(admin, name, cfg.node_reg.get("taints") or [], 240),
        )

    log("")
    log(
        "This node has joined the cluster"
        + (" and a new control plane instance was created:" if cp is not None else ":")
    )
    log("")
    log("* Certificate signing request was sent to apiserver and a response was received.")
    log("* The Kubelet was informed of the new secure connection details.")
    if cp is not None:
        log("* Control plane label and taint were applied to the new node.")
        log("* The Kubernetes control plane instances scaled up.")
        if "local" in cluster["etcd"]:
            log("* A new etcd member was added to the local/stacked etcd cluster.")
        log("")
        log(
            "To start administering your cluster from this node, you need to run the following "
            "as a regular user:"
        )
        log("")
        log("\tmkdir -p $HOME/.kube")
        log("\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config")
        log("\tsudo chown $(id -u):$(id -g) $HOME/.kube/config")
    log("")
    log("Run 'kubectl get nodes' on the control-plane to see this node join the cluster.")
    log("")
    return 0
