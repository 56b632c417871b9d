"""`kubeadm init`: the phases in upstream's order, each skippable with --skip-phases."""

from __future__ import annotations

import time

from .. import versions
from ..client import ApiError
from ..paths import KUBERNETES_DIR, MANIFESTS_DIR, host
from . import addons, certs, manifests, node, preflight, tokens, uploadcerts, uploadconfig
from .common import admin_client, log, mark_control_plane, pause_image, write_cluster_info
from .config import Config, format_duration
from .errors import KubeadmError, PhaseError

PHASES = [
    "preflight",
    "certs",
    "kubeconfig",
    "etcd",
    "control-plane",
    "kubelet-start",
    "wait-control-plane",
    "upload-config",
    "upload-certs",
    "mark-control-plane",
    "bootstrap-token",
    "kubelet-finalize",
    "addon",
]


def skipped(phase: str, skip: list[str]) -> bool:
    for s in skip:
        s = s.strip()
        if (
            s == phase
            or s == phase.split("/")[0]
            or (s.endswith("/all") and s.split("/")[0] == phase.split("/")[0])
        ):
            return True
    return False


def run(
    cfg: Config, upload_certs: bool, certificate_key: str | None, ignore: list[str], skip: list[str]
) -> int:
    skip = list(skip) + list(cfg.init.get("skipPhases") or [])
    cluster = cfg.cluster
    advertise = cfg.init["localAPIEndpoint"]["advertiseAddress"]
    port = int(cfg.init["localAPIEndpoint"]["bindPort"])
    name = cfg.node_name
    local_etcd = "local" in cluster["etcd"]
    log(f"[init] Using Kubernetes version: {cluster['kubernetesVersion']}")

    def phase(p: str, fn) -> None:
        if skipped(p, skip):
            return
        try:
            fn()
        except PhaseError:
            raise
        except KubeadmError as e:
            raise PhaseError(p, str(e)) from None
        except ApiError as e:
            raise PhaseError(p, str(e)) from None

    def do_preflight():
        log("[preflight] Running pre-flight checks")
        checks = [preflight.is_root(), *preflight.resources()]
        ports = [port, 10259, 10257, 10250] + ([2379, 2380] if local_etcd else [])
        checks += [preflight.port_free(p) for p in ports]
        for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
            checks.append(preflight.file_available(f"{MANIFESTS_DIR}/{comp}.yaml"))
        checks += preflight.kubelet_installed()
        checks += [preflight.cri(cfg.node_reg["criSocket"]), preflight.ip_forward()]
        if local_etcd:
            checks.append(preflight.dir_available(cluster["etcd"]["local"]["dataDir"]))
        preflight.run(checks, ignore, log)
        log("[preflight] Pulling images required for setting up a Kubernetes cluster")
        log(
            "[preflight] This might take a minute or two, depending on the speed of your "
            "internet connection"
        )
        log(
            "[preflight] You can also perform this action beforehand using 'kubeadm config "
            "images pull'"
        )

    def do_certs():
        log(f'[certs] Using certificateDir folder "{cluster["certificatesDir"]}"')
        certs.create_cas(cluster["certificatesDir"], local_etcd, log)
        certs.create_leaves(cluster, name, advertise, log)

    def do_kubeconfig():
        certs.create_kubeconfigs(
            cluster,
            name,
            advertise,
            port,
            [
                "admin.conf",
                "super-admin.conf",
                "kubelet.conf",
                "controller-manager.conf",
                "scheduler.conf",
            ],
            log,
        )

    def do_etcd():
        if not local_etcd:
            return
        log(f'[etcd] Creating static Pod manifest for local etcd in "{MANIFESTS_DIR}"')
        manifests.write("etcd", manifests.etcd_pod(cluster, name, advertise))

    def do_control_plane():
        log(f'[control-plane] Using manifest folder "{MANIFESTS_DIR}"')
        for comp, pod in (
            ("kube-apiserver", manifests.apiserver_pod(cluster, advertise, port)),
            ("kube-controller-manager", manifests.controller_manager_pod(cluster)),
            ("kube-scheduler", manifests.scheduler_pod(cluster)),
        ):
            log(f'[control-plane] Creating static Pod manifest for "{comp}"')
            manifests.write(comp, pod)

    def do_kubelet_start():
        node.systemctl("stop", "kubelet")
        node.write_flags(cfg.node_reg, pause_image(cluster), False, log)
        node.write_kubelet_config(node.kubelet_config(cluster, cfg.kubelet), log)
        log("[kubelet-start] Starting the kubelet")
        node.systemctl("restart", "kubelet")

    super_admin = f"{KUBERNETES_DIR}/super-admin.conf"

    def do_wait():
        log(
            "[wait-control-plane] Waiting for the kubelet to boot up the control plane as static "
            f'Pods from directory "{MANIFESTS_DIR}"'
        )
        node.wait_kubelet(cfg.timeout("kubeletHealthCheck"), log)
        node.wait_api(
            admin_client(super_admin, retry_for=0),
            cfg.timeout("controlPlaneComponentHealthCheck"),
            log,
        )
        # kubeadm makes admin.conf's group a cluster admin using super-admin.conf.
        admin_client(super_admin).create_or_update(tokens.cluster_admins_binding())

    def client():
        return admin_client()

    def do_upload_config():
        uploadconfig.upload(client(), cfg, node.kubelet_config(cluster, cfg.kubelet))

    def do_upload_certs():
        if not upload_certs:
            log("[upload-certs] Skipping phase. Please see --upload-certs")
            return
        key = certificate_key or cfg.init.get("certificateKey") or uploadcerts.new_key()
        uploadcerts.upload(client(), cluster, key, log)
        log("[upload-certs] Using certificate key:")
        log(key)
        state["key"] = key

    def do_mark():
        mark_control_plane(
            client(), name, cfg.node_reg.get("taints") or [], cfg.timeout("kubernetesAPICall") * 4
        )

    def do_bootstrap_token():
        c = client()
        for t in cfg.init["bootstrapTokens"]:
            t.setdefault("token", tokens.generate())
            state.setdefault("token", t["token"])
            log(f"[bootstrap-token] Using token: {t['token']}")
        log("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles")
        for t in cfg.init["bootstrapTokens"]:
            tokens.create(
                c,
                t["token"],
                ttl=t.get("ttl"),
                usages=t.get("usages"),
                groups=t.get("groups"),
                description=t.get("description", ""),
            )
        log("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes")
        log(
            "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs "
            "in order for nodes to get long term certificate credentials"
        )
        log(
            "[bootstrap-token] Configured RBAC rules to allow the csrapprover controller "
            "automatically approve CSRs from a Node Bootstrap Token"
        )
        log(
            "[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node "
            "client certificates in the cluster"
        )
        for obj in tokens.bootstrap_rbac():
            c.create_or_update(obj)
        log(
            '[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace'
        )
        write_cluster_info(c, cluster, certs.control_plane_url(cluster, advertise, port))

    def do_finalize():
        pem = "/var/lib/kubelet/pki/kubelet-client-current.pem"
        deadline = time.monotonic() + 30
        import os

        while not os.path.exists(host(pem)) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not os.path.exists(host(pem)):
            return
        from .. import kubeconfig as kcmod

        path = f"{KUBERNETES_DIR}/kubelet.conf"
        kc = kcmod.load(path)
        user = kc["users"][0]["user"]
        user.pop("client-certificate-data", None)
        user.pop("client-key-data", None)
        user["client-certificate"] = pem
        user["client-key"] = pem
        kcmod.write(path, kc)
        log(
            f'[kubelet-finalize] Updating "{path}" to point to a rotatable kubelet client '
            "certificate and key"
        )

    def do_addons():
        c = client()
        if not skipped("addon/coredns", skip):
            addons.coredns(c, cluster)
            log("[addons] Applied essential addon: CoreDNS")
        if not skipped("addon/kube-proxy", skip):
            addons.kube_proxy(
                c, cluster, certs.control_plane_url(cluster, advertise, port), cfg.kubeproxy
            )
            log("[addons] Applied essential addon: kube-proxy")

    state: dict = {}
    for p, fn in (
        ("preflight", do_preflight),
        ("certs", do_certs),
        ("kubeconfig", do_kubeconfig),
        ("etcd", do_etcd),
        ("control-plane", do_control_plane),
        ("kubelet-start", do_kubelet_start),
        ("wait-control-plane", do_wait),
        ("upload-config", do_upload_config),
        ("upload-certs", do_upload_certs),
        ("mark-control-plane", do_mark),
        ("bootstrap-token", do_bootstrap_token),
        ("kubelet-finalize", do_finalize),
        ("addon", do_addons),
    ):
        phase(p, fn)
    print_success(cfg, state.get("token"), state.get("key"), advertise, port)
    return 0


def join_command(
    server_host: str,
    token: str,
    ca_hash: str,
    control_plane: bool = False,
    key: str | None = None,
    wrap: bool = True,
) -> str:
    sep = " \\\n\t" if wrap else " "
    cmd = f"kubeadm join {server_host} --token {token}{sep}--discovery-token-ca-cert-hash {ca_hash}"
    if control_plane:
        cmd += f"{sep}--control-plane"
        if key:
            cmd += f" --certificate-key {key}"
    return cmd


def print_success(
    cfg: Config, token: str | None, key: str | None, advertise: str, port: int
) -> None:
    cluster = cfg.cluster
    ep = cluster.get("controlPlaneEndpoint") or f"{advertise}:{port}"
    if ":" not in ep.rsplit("]", 1)[-1]:
        ep = f"{ep}:{port}"
    log("")
    log("Your Kubernetes control-plane has initialized successfully!")
    log("")
    log("To start using your cluster, you need to run the following as a regular user:")
    log("")
    log("  mkdir -p $HOME/.kube")
    log("  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config")
    log("  sudo chown $(id -u):$(id -g) $HOME/.kube/config")
    log("")
    log("Alternatively, if you are the root user, you can run:")
    log("")
    log("  export KUBECONFIG=/etc/kubernetes/admin.conf")
    log("")
    log("You should now deploy a pod network to the cluster.")
    log('Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:')
    log("  https://kubernetes.io/docs/concepts/cluster-administration/addons/")
    log("")
    if token is None:
        return
    ca_hash = certs.ca_hash(cluster["certificatesDir"])
    if cluster.get("controlPlaneEndpoint"):
        log(
            "You can now join any number of control-plane nodes running the following command "
            "on each as root:"
        )
        log("")
        log("  " + join_command(ep, token, ca_hash, True, key))
        log("")
        if key:
            log(
                "Please note that the certificate-key gives access to cluster sensitive data, "
                "keep it secret!"
            )
            log(
                "As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you "
                "can use"
            )
            log('"kubeadm init phase upload-certs --upload-certs" to reload certs afterward.')
            log("")
        log(
            "Then you can join any number of worker nodes by running the following on each as root:"
        )
    else:
        log(
            "Then you can join any number of worker nodes by running the following on each as root:"
        )
    log("")
    log(join_command(ep, token, ca_hash))


def token_ttl_text(seconds: float) -> str:
    return format_duration(seconds)


__all__ = ["PHASES", "join_command", "run", "versions"]
