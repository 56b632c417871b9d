"""`kubeadm upgrade plan|apply|node` as kubeadm 1.31+ runs them (cmd/kubeadm/app/cmd/upgrade,
cmd/kubeadm/app/phases/upgrade): version policy, the static Pod control plane moved to the
new version with backups under /etc/kubernetes/tmp, the kubeadm-config and kubelet-config
ConfigMaps, the node's kubelet configuration, and the addons once every control plane is
upgraded."""

from __future__ import annotations

import os
import random
import re
import shutil
import sys
import time

import yaml

from .. import kubeconfig, pki, versions
from ..client import ApiError, Client, NotFound
from ..etcd import EtcdError
from ..paths import ADMIN_CONF, KUBELET_CONF, KUBELET_CONFIG, KUBERNETES_DIR, MANIFESTS_DIR, host
from . import addons, certs, certscmd, manifests, node, preflight, tokens, uploadconfig
from .common import admin_client, etcd_client_from_cluster, klog_warn, log
from .config import Config, cluster_from_configmap
from .errors import KubeadmError, PhaseError
from .init import skipped

TMP_DIR = f"{KUBERNETES_DIR}/tmp"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
UPGRADE_MANIFEST_TIMEOUT = 300.0  # phases/upgrade/staticpods.go UpgradeManifestTimeout
# phases/upgrade/policy.go: one minor up or down per upgrade; kubelets up to three minors
# older than the target (the version skew policy since 1.28).
MINOR_UPGRADE_SKEW = MINOR_DOWNGRADE_SKEW = 1
KUBELET_SKEW = 3
# What each component's upgrade renews first (staticpods.go renewCertsByComponent).
RENEWED = {
    "etcd": ["etcd-server", "etcd-peer", "etcd-healthcheck-client"],
    "kube-apiserver": ["apiserver", "apiserver-kubelet-client", "front-proxy-client"],
    "kube-controller-manager": ["controller-manager.conf"],
    "kube-scheduler": ["scheduler.conf"],
}


# --- versions ---------------------------------------------------------------------------------


def semver(text: str) -> tuple:
    """A sort key for `v1.32.3`, `1.33.0-rc.1`, `3.5.16-0` (semantic versioning: a
    pre-release sorts before its release, so etcd's image tag 3.5.16-0 < 3.5.16)."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?", text)
    if not m:
        raise KubeadmError(f'could not parse "{text}" as version')
    pre = m.group(4)
    rank = (
        (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
        if pre
        else (1, ())
    )
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), rank)


def minor(text: str) -> int:
    return semver(text)[1]


def prerelease(text: str) -> str:
    return text.partition("-")[2].partition("+")[0]


def enforce_policies(
    client: Client, target: str, allow_experimental: bool, allow_rc: bool, force: bool
) -> None:
    """phases/upgrade/policy.go EnforceVersionPolicies, called from the apply preflight."""
    log(f'[upgrade/preflight] You have chosen to upgrade the cluster version to "{target}"')
    cluster = client.request("GET", "/version")["gitVersion"]
    log(f"[upgrade/versions] Cluster version: {cluster}")
    kubeadm = versions.kubernetes_version()
    log(f"[upgrade/versions] kubeadm version: {kubeadm}")
    kubelets = sorted({n["status"]["nodeInfo"]["kubeletVersion"] for n in client.list("Node")})
    new, unstable = semver(target), bool(prerelease(target))
    mandatory: list[str] = []
    skippable: list[str] = []
    minimum = f"v1.{minor(kubeadm) - 1}.0"
    if new < semver(minimum):
        mandatory.append(
            f'Specified version to upgrade to "{target}" is equal to or lower than the minimum '
            f'supported version "{cluster}". Please specify a higher version to upgrade to'
        )
    if new[1] > minor(cluster) + MINOR_UPGRADE_SKEW:
        (skippable if unstable else mandatory).append(
            f'Specified version to upgrade to "{target}" is too high; kubeadm can upgrade only '
            f"{MINOR_UPGRADE_SKEW} minor version at a time"
        )
    if new[1] < minor(cluster) - MINOR_DOWNGRADE_SKEW:
        (skippable if unstable else mandatory).append(
            f'Specified version to downgrade to "{target}" is too low; kubeadm can downgrade only '
            f"{MINOR_DOWNGRADE_SKEW} minor version at a time"
        )
    if semver(kubeadm) < new:
        if new[1] > minor(kubeadm):
            (skippable if unstable else mandatory).append(
                f'Specified version to upgrade to "{target}" is at least one minor release higher '
                f"than the kubeadm minor release ({new[1]} > {minor(kubeadm)}). Such an upgrade "
                "is not supported"
            )
        else:
            skippable.append(
                f'Specified version to upgrade to "{target}" is higher than the kubeadm version '
                f'"{kubeadm}". Upgrade kubeadm first using the tool you used to install kubeadm'
            )
    if minor(kubeadm) > new[1]:
        skippable.append(
            f"Kubeadm version {kubeadm} can only be used to upgrade to Kubernetes version "
            f"1.{minor(kubeadm)}"
        )
    rc_allowed = allow_rc and prerelease(target).startswith("rc")
    if unstable and not (allow_experimental or rc_allowed):
        skippable.append(
            f'Specified version to upgrade to "{target}" is an unstable version and such upgrades '
            "weren't allowed via setting the --allow-*-upgrades flags"
        )
    too_old = [k for k in kubelets if new[1] > minor(k) + KUBELET_SKEW]
    if too_old:
        skippable.append(
            "There are kubelets in this cluster that are too old that have these versions "
            f"[{' '.join(too_old)}]"
        )

    def listed(errors: list[str]) -> str:
        return "".join(f"\t- {e}\n" for e in errors)

    if mandatory:
        raise KubeadmError(
            "the version argument is invalid due to these fatal errors:\n\n"
            f"{listed(mandatory)}\nPlease fix the misalignments highlighted above and try "
            "upgrading again"
        )
    if skippable and not force:
        raise KubeadmError(
            "the version argument is invalid due to these errors:\n\n"
            f"{listed(skippable)}\nCan be bypassed if you pass the --force flag"
        )
    if skippable:
        log(
            f"[upgrade/preflight] Found {len(skippable)} potential version compatibility errors "
            f"but skipping since the --force flag is set: \n\n{listed(skippable)}"
        )


# --- what the cluster and this node say ------------------------------------------------------


def fetch_cluster(client: Client, prefix: str, say=log) -> dict:
    """The ClusterConfiguration of kubeadm-config (configutil.FetchInitConfigurationFromCluster)."""
    say(
        f'[{prefix}] Reading configuration from the "kubeadm-config" ConfigMap in namespace '
        '"kube-system"...'
    )
    say(
        f"[{prefix}] Use 'kubeadm init phase upload-config --config your-config-file' to "
        "re-upload it."
    )
    try:
        cm = client.get("ConfigMap", "kubeadm-config", "kube-system")
    except NotFound:
        raise KubeadmError(
            '[upgrade] FATAL: the ConfigMap "kubeadm-config" in the "kube-system" namespace was '
            "not found"
        ) from None
    return cluster_from_configmap(cm.get("data") or {})


def node_name() -> str:
    """This node's name: the kubelet client certificate's CN in kubelet.conf."""
    try:
        cert = kubeconfig.Credentials.from_file(KUBELET_CONF).cert_pem
    except OSError as e:
        raise KubeadmError(
            f"failed to get node registration: failed to get node name from kubelet config: {e}"
        ) from None
    return pki.subject_of(pki.load_cert(cert))[0].removeprefix("system:node:")


def local_endpoint() -> tuple[str, int]:
    """The API endpoint kubeadm recorded for this control plane (the kube-apiserver Pod's
    advertise-address annotation)."""
    pod = manifests.read("kube-apiserver") or {}
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    endpoint = ann.get("kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint", "")
    address, _, port = endpoint.rpartition(":")
    if not address:
        raise KubeadmError("failed to get APIEndpoint information for this node")
    return address.strip("[]"), int(port)


def unupgraded_control_planes(client: Client, name: str) -> list[str]:
    """phases/upgrade/postupgrade.go UnupgradedControlPlaneInstances: the control planes whose
    kube-apiserver image differs from this (already upgraded) one's."""
    images = {
        p["spec"].get("nodeName"): next(
            c["image"] for c in p["spec"]["containers"] if c["name"] == "kube-apiserver"
        )
        for p in client.list("Pod", "kube-system", "component=kube-apiserver")
    }
    if name not in images:
        raise KubeadmError(
            f"cannot find kube-apiserver image for current control plane instance {name}"
        )
    return sorted(n for n, image in images.items() if image != images[name])


# --- checks --------------------------------------------------------------------------------


def health_checks(client: Client, ignore: list[str], say=log) -> None:
    """phases/upgrade/health.go CheckClusterHealth (but its CreateJob check: no Jobs here)."""
    say("[upgrade] Running cluster health checks")
    control_planes = client.list("Node", label_selector="node-role.kubernetes.io/control-plane")
    not_ready = [
        n["metadata"]["name"]
        for n in control_planes
        for c in n.get("status", {}).get("conditions") or []
        if c.get("type") == "Ready" and c.get("status") != "True"
    ]
    missing = [
        f"{MANIFESTS_DIR}/{c}.yaml"
        for c in CONTROL_PLANE
        if not os.path.exists(host(f"{MANIFESTS_DIR}/{c}.yaml"))
    ]
    checks = [
        preflight.Check(
            "ControlPlaneNodesReady",
            "failed to find any nodes with a control-plane role"
            if not control_planes
            else f"there are NotReady control-planes in the cluster: [{' '.join(not_ready)}]"
            if not_ready
            else None,
        ),
        preflight.Check(
            "StaticPodManifest",
            "The control plane seems to be Static Pod-hosted, but some of the manifests don't "
            "seem to exist on disk. This probably means you're running 'kubeadm upgrade' on a "
            "remote machine, which is not supported for a Static Pod-hosted cluster. Manifest "
            f"files not found: [{' '.join(missing)}]"
            if missing
            else None,
        ),
    ]
    preflight.run(checks, ignore, say)


# --- the static Pod control plane (phases/upgrade/staticpods.go) ----------------------------


def mkdir_temp(prefix: str) -> str:
    """os.MkdirTemp under /etc/kubernetes/tmp: the prefix, random digits, mode 0700."""
    os.makedirs(host(TMP_DIR), mode=0o700, exist_ok=True)
    while True:
        path = f"{TMP_DIR}/{prefix}{random.randrange(2**32)}"
        try:
            os.mkdir(host(path), 0o700)
            return path
        except FileExistsError:
            continue


def mkdir_timestamp(prefix: str) -> str:
    """constants.CreateTimestampDirForKubeadm: <prefix>-<date>-<time>, to the second."""
    os.makedirs(host(TMP_DIR), mode=0o700, exist_ok=True)
    path = f"{TMP_DIR}/{prefix}-{time.strftime('%Y-%m-%d-%H-%M-%S')}"
    try:
        os.mkdir(host(path), 0o700)
    except FileExistsError:
        raise KubeadmError(
            f"could not create timestamp directory: mkdir {path}: file exists"
        ) from None
    return path


class StaticPodUpgrade:
    """StaticPodControlPlane for this node: etcd first (a copy of its data directory always,
    a new manifest only for a newer etcd), then each component whose new manifest differs:
    its certificates renewed, the old manifest moved to the backup directory and the new one
    in, the mirror Pod's hash waited for; any failure moves the old manifests back."""

    def __init__(self, admin: str, cluster: dict, name: str, advertise: str, port: int):
        self.client = admin_client(admin)
        self.poll = admin_client(admin, timeout=5, retry_for=0)
        self.cluster, self.name, self.advertise, self.port = cluster, name, advertise, port
        self.pki_dir = cluster["certificatesDir"]
        self.local_etcd = "local" in cluster["etcd"]
        self.recover: dict[str, str] = {}
        self.timeout = UPGRADE_MANIFEST_TIMEOUT

    def run(self, etcd_upgrade: bool, renew: bool) -> None:
        before = {c: self.wait_hash(c) for c in CONTROL_PLANE}
        self.temp = mkdir_temp("kubeadm-upgraded-manifests")
        self.backup = mkdir_timestamp("kubeadm-backup-manifests")
        backup_etcd = mkdir_timestamp("kubeadm-backup-etcd")
        if self.local_etcd and etcd_upgrade:
            self.etcd(backup_etcd, renew)
        log(f'[upgrade/staticpods] Writing new Static Pod manifests to "{self.temp}"')
        for comp, pod in (
            ("kube-apiserver", manifests.apiserver_pod(self.cluster, self.advertise, self.port)),
            ("kube-controller-manager", manifests.controller_manager_pod(self.cluster)),
            ("kube-scheduler", manifests.scheduler_pod(self.cluster)),
        ):
            manifests.write(comp, pod, self.temp)
        for comp in CONTROL_PLANE:
            self.component(comp, before[comp], renew)
        if renew:
            certscmd.renew("admin.conf", self.pki_dir)
        shutil.rmtree(host(self.temp), ignore_errors=True)
        external = self.cluster["etcd"].get("external") or {}
        if not etcd_upgrade or len(external.get("endpoints") or []) > 1:
            shutil.rmtree(host(backup_etcd), ignore_errors=True)

    def mirror_hash(self, component: str) -> str | None:
        try:
            pod = self.poll.get("Pod", f"{component}-{self.name}", "kube-system")
        except (ApiError, OSError):
            return None
        return (pod["metadata"].get("annotations") or {}).get("kubernetes.io/config.hash")

    def wait_hash(self, component: str, changed_from: str | None = None) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            found = self.mirror_hash(component)
            if found and found != changed_from:
                return found
            if time.monotonic() > deadline:
                what = "did not change" if changed_from else "was not found"
                raise KubeadmError(
                    f"static Pod hash for component {component} on Node {self.name} {what} after "
                    f"{int(self.timeout // 60)}m0s: timed out waiting for the condition"
                )
            time.sleep(1)

    def wait_running(self, component: str) -> None:
        """apiclient.WaitForPodsWithLabel: every Pod of the component Running, on any node."""
        deadline, seen = time.monotonic() + self.timeout, -1
        while True:
            try:
                pods = self.poll.list("Pod", "kube-system", f"component={component}")
            except (ApiError, OSError):
                pods = []
            if pods and len(pods) != seen:
                seen = len(pods)
                log(f"[apiclient] Found {seen} Pods for label selector component={component}")
            if pods and all(p.get("status", {}).get("phase") == "Running" for p in pods):
                return
            if time.monotonic() > deadline:
                raise KubeadmError(
                    f"timed out waiting for the condition: pods with label component={component}"
                )
            time.sleep(1)

    def component(self, comp: str, before: str, renew: bool) -> None:
        log(f'[upgrade/staticpods] Preparing for "{comp}" upgrade')
        current, backup = f"{MANIFESTS_DIR}/{comp}.yaml", f"{self.backup}/{comp}.yaml"
        self.recover[comp] = backup
        old = manifests.read(comp)
        if old is None:
            raise KubeadmError(f"failed to read manifest file {current}: no such file or directory")
        if old == manifests.read(comp, self.temp):
            log(
                f"[upgrade/staticpods] Current and new manifests of {comp} are equal, "
                "skipping upgrade"
            )
            return
        if renew:
            extra = (
                ["apiserver-etcd-client"] if comp == "kube-apiserver" and self.local_etcd else []
            )
            for cert in RENEWED[comp] + extra:
                log(f"[upgrade/staticpods] Renewing {cert} certificate")
                certscmd.renew(cert, self.pki_dir)
        os.rename(host(current), host(backup))
        os.rename(host(f"{self.temp}/{comp}.yaml"), host(current))
        log(
            f'[upgrade/staticpods] Moved new manifest to "{current}" and backed up old manifest '
            f'to "{backup}"'
        )
        log("[upgrade/staticpods] Waiting for the kubelet to restart the component")
        log(
            "[upgrade/staticpods] This might take a minute or longer depending on the "
            f"component/version gap (timeout {int(self.timeout // 60)}m0s)"
        )
        try:
            self.wait_hash(comp, before)
            self.wait_running(comp)
        except KubeadmError as e:
            raise self.rollback(e, comp == "etcd") from None
        log(f'[upgrade/staticpods] Component "{comp}" upgraded successfully!')

    def rollback(self, error: Exception, restore_etcd: bool) -> KubeadmError:
        faced = [str(error)]
        for comp, backup in self.recover.items():
            if (comp == "etcd" and not restore_etcd) or not os.path.exists(host(backup)):
                continue
            try:
                os.replace(host(backup), host(f"{MANIFESTS_DIR}/{comp}.yaml"))
            except OSError as e:
                faced.append(str(e))
        return KubeadmError(
            "couldn't upgrade control plane. kubeadm has tried to recover everything into the "
            "earlier state. Errors faced: "
            + (faced[0] if len(faced) == 1 else f"[{', '.join(faced)}]")
        )

    def etcd(self, backup_dir: str, renew: bool) -> None:
        """performEtcdStaticPodUpgrade: healthy members, a copy of the data directory (while
        etcd runs), then a new manifest only when kubeadm's etcd is newer than the running
        one. kubeadm's tag (3.5.16-0) is a pre-release of the same version (3.5.16) in semver,
        so an unchanged etcd is reported as a downgrade it will not make."""
        try:
            etcd = etcd_client_from_cluster(self.client, self.pki_dir)
            for endpoint in etcd.endpoints:
                etcd.status(endpoint)
            current = etcd.status(f"https://{self.advertise}:2379").get("version", "")
        except EtcdError as e:
            raise KubeadmError(f"etcd cluster is not healthy: {e}") from None
        data_dir = self.cluster["etcd"]["local"]["dataDir"]
        try:
            shutil.copytree(
                host(data_dir), host(f"{backup_dir}/{os.path.basename(data_dir)}"), symlinks=True
            )
        except OSError as e:
            raise KubeadmError(f"failed to back up etcd data: {e}") from None
        version = self.cluster["kubernetesVersion"]
        desired = versions.etcd_tag(version)
        if semver(desired) < semver(current):
            log(
                "[upgrade/etcd] Non fatal issue encountered during upgrade: the desired etcd "
                f'version for this Kubernetes version "{version}" is "{desired}", but the current '
                f'etcd version is "{current}". Won\'t downgrade etcd, instead just continue'
            )
            return
        if desired == current:
            return
        before = self.wait_hash("etcd")
        manifests.write(
            "etcd", manifests.etcd_pod(self.cluster, self.name, self.advertise), self.temp
        )
        self.component("etcd", before, renew)


# --- the node's kubelet, the ConfigMaps, the addons ------------------------------------------


def write_kubelet_config(client: Client) -> None:
    """WriteKubeletConfigFiles: config.yaml backed up, then written from kubelet-config."""
    backup = mkdir_temp("kubeadm-kubelet-config")
    klog_warn(
        f"Using temporary directory {backup} for kubelet config. To override it set the "
        "environment variable KUBEADM_UPGRADE_DRYRUN_DIR"
    )
    dest = f"{backup}/config.yaml"
    log(f"[upgrade] Backing up kubelet config file to {dest}")
    try:
        shutil.copyfile(host(KUBELET_CONFIG), host(dest))
    except OSError as e:
        raise KubeadmError(f"error backing up the kubelet config file: {e}") from None
    cm = client.get("ConfigMap", "kubelet-config", "kube-system")
    node.write_kubelet_config(yaml.safe_load((cm.get("data") or {}).get("kubelet") or "{}"), log)
    log(
        "[upgrade/kubelet-config] The kubelet configuration for this node was successfully "
        "upgraded!"
    )


def upload_config(client: Client, cluster: dict) -> None:
    """The upload-config phase: kubeadm-config with the new version, in this kubeadm's
    preferred API version, and kubelet-config as the cluster has it."""
    cfg = Config()
    cfg.cluster = cluster
    current = client.get("ConfigMap", "kubelet-config", "kube-system")
    doc = yaml.safe_load((current.get("data") or {}).get("kubelet") or "{}")
    uploadconfig.upload(client, cfg, node.kubelet_config(cluster, doc))


def upgrade_addons(client: Client, cluster: dict, name: str, skip: list[str]) -> None:
    """The addon phase: CoreDNS and kube-proxy, only once no control plane runs an older
    kube-apiserver image than this one (kubeadm 1.28+)."""
    behind = unupgraded_control_planes(client, name)
    for addon, label in (("coredns", "CoreDNS"), ("kube-proxy", "kube-proxy")):
        if skipped(f"addon/{addon}", skip):
            continue
        if behind:
            log(
                "[upgrade/addon] Skipping upgrade of addons because control plane instances "
                f"[{' '.join(behind)}] have not been upgraded"
            )
            continue
        if addon == "coredns":
            addons.coredns(client, cluster)
        else:
            proxy = client.get_or_none("ConfigMap", "kube-proxy", "kube-system") or {}
            doc = yaml.safe_load((proxy.get("data") or {}).get("config.conf") or "{}")
            advertise, port = local_endpoint()
            addons.kube_proxy(
                client, cluster, certs.control_plane_url(cluster, advertise, port), doc
            )
        log(f"[addons] Applied essential addon: {label}")


# --- the commands ------------------------------------------------------------------------

NO_CONFIG = "this kubeadm stand-in does not read --config for upgrade (UpgradeConfiguration)"


def normalize(version: str) -> str:
    """configutil.NormalizeKubernetesVersion: `v` added; labels (stable, latest) would need
    dl.k8s.io."""
    try:
        semver(version)
    except KubeadmError:
        raise KubeadmError(
            f'version "{version}" doesn\'t match patterns for neither semantic version nor '
            "labels (stable, latest, ...)"
        ) from None
    return "v" + version.lstrip("v")


def confirm() -> None:
    """cmdutil.InteractivelyConfirmAction."""
    print("[upgrade] Are you sure you want to proceed? [y/N]: ", end="", flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise KubeadmError("won't proceed; the user didn't answer (Y|y) in order to continue")


def run_phases(phases: list[tuple[str, object]], skip: list[str]) -> None:
    for name, fn in phases:
        if skipped(name, skip):
            continue
        try:
            fn()
        except PhaseError:
            raise
        except (KubeadmError, ApiError, EtcdError) as e:
            raise PhaseError(name, str(e)) from None


def pull_images(dry_run: bool, prefix: str) -> None:
    if dry_run:
        log("[dryrun] Would pull the required images (like 'kubeadm config images pull')")
        return
    log(f"[{prefix}] Pulling images required for setting up a Kubernetes cluster")
    log(
        f"[{prefix}] This might take a minute or two, depending on the speed of your internet "
        "connection"
    )
    log(
        f"[{prefix}] You can also perform this action beforehand using 'kubeadm config images pull'"
    )


def apply(a) -> int:
    """`kubeadm upgrade apply VERSION`: the phases of cmd/upgrade/apply.go."""
    if a.config:
        raise KubeadmError(NO_CONFIG)
    if not a.version:
        raise KubeadmError("missing one or more required arguments. Required arguments: [version]")
    client = admin_client(a.kubeconfig)
    cluster = fetch_cluster(client, "upgrade")
    target = normalize(a.version)
    cluster["kubernetesVersion"] = target
    name = node_name()
    ignore = a.ignore_preflight_errors

    def do_preflight():
        log("[upgrade/preflight] Running preflight checks")
        preflight.run([preflight.is_root()], ignore, log)
        health_checks(client, ignore)
        enforce_policies(
            client,
            target,
            a.allow_experimental_upgrades,
            a.allow_release_candidate_upgrades,
            a.force,
        )
        if not (a.yes or a.force or a.dry_run):
            confirm()
        pull_images(a.dry_run, "upgrade/preflight")

    def do_control_plane():
        log(
            f"[upgrade/control-plane] Upgrading your static Pod-hosted control plane to version "
            f'"{target}" (timeout: 5m0s)...'
        )
        advertise, port = local_endpoint()
        StaticPodUpgrade(a.kubeconfig, cluster, name, advertise, port).run(
            a.etcd_upgrade, a.certificate_renewal
        )

    phases = [
        ("preflight", do_preflight),
        ("control-plane", do_control_plane),
        ("upload-config", lambda: upload_config(client, cluster)),
        ("kubelet-config", lambda: write_kubelet_config(client)),
        ("bootstrap-token", lambda: bootstrap_rbac(client)),
        ("addon", lambda: upgrade_addons(client, cluster, name, a.skip_phases)),
    ]
    run_phases(phases[:1] if a.dry_run else phases, a.skip_phases)
    if a.dry_run:
        log("[upgrade/successful] Finished dryrunning successfully!")
        return 0
    log("")
    log(f'[upgrade] SUCCESS! A control plane node of your cluster was upgraded to "{target}".')
    log("")
    log(
        "[upgrade] Now please proceed with upgrading the rest of the nodes by following the "
        "right order."
    )
    return 0


def bootstrap_rbac(client: Client) -> None:
    log("[upgrade/bootstrap-token] Configuring bootstrap token and cluster-info RBAC rules")
    for obj in tokens.bootstrap_rbac():
        client.create_or_update(obj)


def upgrade_node(a) -> int:
    """`kubeadm upgrade node`: cmd/upgrade/node.go. A control plane (its kube-apiserver
    manifest exists) is moved to kubeadm-config's kubernetesVersion, which `upgrade apply`
    uploaded; every node gets the kubelet configuration of kubelet-config."""
    if a.config:
        raise KubeadmError(NO_CONFIG)
    control_plane = os.path.exists(host(f"{MANIFESTS_DIR}/kube-apiserver.yaml"))
    kubeconfig_path = a.kubeconfig or (ADMIN_CONF if control_plane else KUBELET_CONF)
    client = admin_client(kubeconfig_path)
    cluster = fetch_cluster(client, "upgrade")
    name = node_name()

    def do_preflight():
        log("[preflight] Running pre-flight checks")
        preflight.run([preflight.is_root()], a.ignore_preflight_errors, log)
        if control_plane:
            pull_images(a.dry_run, "preflight")
        else:
            log("[preflight] Skipping prepull. Not a control plane node.")

    def do_control_plane():
        if not control_plane:
            log("[upgrade] Skipping phase. Not a control plane node.")
            return
        version = cluster["kubernetesVersion"]
        log(
            "[upgrade] Upgrading your Static Pod-hosted control plane instance to version "
            f'"{version}"...'
        )
        advertise, port = local_endpoint()
        try:
            StaticPodUpgrade(kubeconfig_path, cluster, name, advertise, port).run(
                a.etcd_upgrade, a.certificate_renewal
            )
        except KubeadmError as e:
            raise KubeadmError(f"couldn't complete the static pod upgrade: {e}") from None
        log("[upgrade] The control plane instance for this node was successfully upgraded!")

    def do_addons():
        if control_plane:
            upgrade_addons(client, cluster, name, a.skip_phases)
            return
        for addon in ("coredns", "kube-proxy"):
            log(f"[upgrade/addon] Skipping the addon/{addon} phase. Not a control plane node.")

    phases = [
        ("preflight", do_preflight),
        ("control-plane", do_control_plane),
        ("kubelet-config", lambda: write_kubelet_config(client)),
        ("addon", do_addons),
    ]
    run_phases(phases[:1] if a.dry_run else phases, a.skip_phases)
    return 0
