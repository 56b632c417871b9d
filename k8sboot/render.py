"""Render the files each host needs from the Jinja2 templates in templates/.

Templates hold no logic beyond loops and conditionals: every value is computed here.
Secrets (join tokens, certificate keys) are passed in only at the moment a join runs;
without them the files carry placeholders that kubeadm would refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

import jinja2

from k8sboot.host_state import CONFIG_DIR
from k8sboot.kubeadm_node import (
    ADMIN_CONF,
    API_SERVER_PORT,
    APISERVER_ETCD_CLIENT_CERT,
    APISERVER_ETCD_CLIENT_KEY,
    ETCD_CA_CERT,
    ETCD_DATA_DIR,
    MANIFESTS_DIR,
    SUPER_ADMIN_CONF,
)
from k8sboot.resources import data_dir
from k8sboot.spec import Cluster, Host
from k8sboot.spec.model import DEFAULT_REGISTRY

CRI_SOCKET = "unix:///run/containerd/containerd.sock"
INIT_CONFIG = PurePosixPath(CONFIG_DIR) / "kubeadm-init.yaml"
JOIN_CONFIG = PurePosixPath(CONFIG_DIR) / "kubeadm-join.yaml"
UPLOAD_CERTS_CONFIG = PurePosixPath(CONFIG_DIR) / "kubeadm-upload-certs.yaml"
CNI_MANIFEST = PurePosixPath(CONFIG_DIR) / "cni.yaml"
CONTAINERD_CONFIG = PurePosixPath("/etc/containerd/config.toml")
CONTAINERD_HOSTS_DIR = PurePosixPath("/etc/containerd/certs.d")

KUBE_VIP_MANIFEST = PurePosixPath(MANIFESTS_DIR) / "kube-vip.yaml"

KUBE_VIP_VERSION = "v0.8.9"
FLANNEL_VERSION = "v0.26.7"
FLANNEL_CNI_PLUGIN_VERSION = "v1.6.2-flannel1"

PLACEHOLDER_TOKEN = "<bootstrap token: created right before the join>"
PLACEHOLDER_CA_HASH = "<sha256 of the cluster CA: read after kubeadm init>"
PLACEHOLDER_CERT_KEY = "<certificate key: uploaded right before the join>"


@dataclass(frozen=True)
class JoinSecrets:
    """What a join needs that only exists once the first control plane is up."""

    token: str
    ca_cert_hash: str
    certificate_key: str | None = None  # control-plane joins only

    def __repr__(self) -> str:  # never let a secret slip into logs via repr()
        return "JoinSecrets(<masked>)"


PLACEHOLDER_SECRETS = JoinSecrets(PLACEHOLDER_TOKEN, PLACEHOLDER_CA_HASH, PLACEHOLDER_CERT_KEY)


@dataclass(frozen=True)
class RenderedFile:
    path: PurePosixPath  # where the file goes on the host
    content: str
    mode: int = 0o644
    secret: bool = False

    def __repr__(self) -> str:
        return f"RenderedFile({self.path}, {len(self.content)} bytes, mode {self.mode:o})"


def _quote(value: object) -> str:
    """A double-quoted scalar, valid in YAML and TOML alike."""
    return json.dumps(str(value), ensure_ascii=False)


_environment: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    global _environment
    if _environment is None:
        _environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )
        _environment.filters["q"] = _quote
    return _environment


def render_template(template: str, /, **context: object) -> str:
    return environment().get_template(template).render(**context)


def containerd_files(cluster: Cluster) -> list[RenderedFile]:
    files = [
        RenderedFile(
            CONTAINERD_CONFIG,
            render_template(
                "containerd/config.toml.j2",
                sandbox_image=cluster.sandbox_image,
                hosts_dir=str(CONTAINERD_HOSTS_DIR),
            ),
        )
    ]
    for registry, mirrors in sorted(cluster.container_runtime.registry_mirrors.items()):
        files.append(
            RenderedFile(
                CONTAINERD_HOSTS_DIR / registry / "hosts.toml",
                render_template(
                    "containerd/hosts.toml.j2",
                    upstream=_registry_upstream(registry),
                    mirrors=mirrors,
                ),
            )
        )
    return files


def _registry_upstream(registry: str) -> str | None:
    """The `server` of a registry's hosts.toml; none for _default, where containerd falls
    back to whichever registry an image names (containerd docs/hosts.md)."""
    if registry == DEFAULT_REGISTRY:
        return None
    # docker.io is the one registry whose API host differs from its name.
    return "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"


def _node_context(cluster: Cluster, host: Host) -> dict[str, object]:
    release = cluster.release
    return {
        "kubeadm_api": f"kubeadm.k8s.io/{release.kubeadm_api}",
        "v1beta4": release.kubeadm_api == "v1beta4",
        "node_name": host.name,
        "node_ip": host.ip,
        "cri_socket": CRI_SOCKET,
        "bind_port": API_SERVER_PORT,
        "endpoint": cluster.endpoint,
        # Hosts that are control plane and worker at once run workloads: no taints.
        "untainted": host.has("control-plane") and host.has("worker"),
        "kubelet_args": {"node-ip": host.ip},
    }


def kubeadm_file(cluster: Cluster, host: Host, secrets: JoinSecrets | None = None) -> RenderedFile:
    context = _node_context(cluster, host)
    if host is cluster.first_control_plane:
        context |= _cluster_context(cluster)
        return RenderedFile(INIT_CONFIG, render_template("kubeadm/init.yaml.j2", **context))
    real = secrets is not None
    secrets = secrets or PLACEHOLDER_SECRETS
    control_plane = host.has("control-plane")
    if control_plane and secrets.certificate_key is None:
        raise ValueError(f"a control-plane join of {host.name} needs a certificate key")
    context |= {
        "control_plane": control_plane,
        "token": secrets.token,
        "ca_cert_hash": secrets.ca_cert_hash,
        "certificate_key": secrets.certificate_key,
    }
    return RenderedFile(
        JOIN_CONFIG,
        render_template("kubeadm/join.yaml.j2", **context),
        mode=0o600,
        secret=real,
    )


def upload_certs_file(cluster: Cluster, host: Host) -> RenderedFile:
    """The cluster's kubeadm configuration for `kubeadm init phase upload-certs` on a
    control plane. Without `--config` kubeadm takes its defaults (local etcd) and leaves
    external etcd's certificates out of the Secret, so a control-plane join fails
    (kubernetes/kubernetes#84627)."""
    context = _node_context(cluster, host) | _cluster_context(cluster)
    return RenderedFile(
        UPLOAD_CERTS_CONFIG, render_template("kubeadm/init.yaml.j2", **context), mode=0o600
    )


def _cluster_context(cluster: Cluster) -> dict[str, object]:
    endpoint = cluster.control_plane_endpoint
    sans = [*cluster.kubernetes.cert_sans]
    if endpoint.address and endpoint.address not in sans:
        sans.append(endpoint.address)
    external = cluster.etcd.topology == "external"
    return {
        "cluster_name": cluster.name,
        "kubernetes_version": f"v{cluster.release}",
        "pod_subnet": cluster.networking.pod_subnet,
        "service_subnet": cluster.networking.service_subnet,
        "dns_domain": cluster.networking.dns_domain,
        "cert_sans": sans,
        "etcd_endpoints": [f"https://{h.ip}:2379" for h in cluster.etcd_members]
        if external
        else [],
        "proxy_mode": cluster.kubernetes.proxy_mode,
        "etcd_ca_file": ETCD_CA_CERT,
        "etcd_cert_file": APISERVER_ETCD_CLIENT_CERT,
        "etcd_key_file": APISERVER_ETCD_CLIENT_KEY,
        "etcd_data_dir": ETCD_DATA_DIR,
    }


def cni_file(cluster: Cluster) -> RenderedFile:
    template = f"cni/{cluster.networking.cni}.yaml.j2"
    content = render_template(
        template,
        pod_subnet=cluster.networking.pod_subnet,
        flannel_version=FLANNEL_VERSION,
        flannel_cni_plugin_version=FLANNEL_CNI_PLUGIN_VERSION,
    )
    return RenderedFile(CNI_MANIFEST, content)


def kube_vip_file(cluster: Cluster, interface: str, during_init: bool) -> RenderedFile:
    """kube-vip's static pod for a control plane; on the first one, while kubeadm init
    runs, it must use super-admin.conf."""
    endpoint = cluster.control_plane_endpoint
    kubeconfig = SUPER_ADMIN_CONF if during_init else ADMIN_CONF
    content = render_template(
        "kube-vip/kube-vip.yaml.j2",
        version=KUBE_VIP_VERSION,
        address=endpoint.address,
        port=str(endpoint.port),
        interface=interface,
        kubeconfig=kubeconfig,
        admin_conf=ADMIN_CONF,  # where kube-vip reads it, whichever file the host gives
    )
    return RenderedFile(KUBE_VIP_MANIFEST, content, mode=0o600)
