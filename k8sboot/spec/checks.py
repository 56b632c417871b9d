"""Rules that span several fields. Each finding names the field path to fix."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from k8sboot.kubeadm_node import API_SERVER_PORT
from k8sboot.spec.model import Cluster, is_ip_address
from k8sboot.versions import ETCD_CHECKSUMS


@dataclass(frozen=True)
class Finding:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check(cluster: Cluster) -> list[Finding]:
    findings: list[Finding] = []
    for rule in (_hosts, _roles, _endpoint, _subnets, _packages, _etcd_release):
        findings.extend(rule(cluster))
    return findings


def _hosts(cluster: Cluster) -> list[Finding]:
    findings = []
    seen_names: dict[str, int] = {}
    seen_ssh: dict[tuple[str, int], int] = {}
    seen_ips: dict[str, int] = {}
    for i, host in enumerate(cluster.hosts):
        port = host.ssh.port or cluster.ssh.port
        if host.name in seen_names:
            findings.append(
                Finding(f"hosts[{i}].name", f"'{host.name}' is also hosts[{seen_names[host.name]}]")
            )
        if (host.address, port) in seen_ssh:
            other = seen_ssh[(host.address, port)]
            findings.append(
                Finding(
                    f"hosts[{i}].address",
                    f"'{host.address}' (SSH port {port}) is also hosts[{other}]'s address",
                )
            )
        ip_field = "nodeIP" if host.node_ip else "address"
        if not is_ip_address(host.ip):
            findings.append(
                Finding(
                    f"hosts[{i}].nodeIP",
                    f"required when the address is a name ('{host.address}'): the node IP "
                    "Kubernetes uses is an IP address",
                )
            )
        elif ipaddress.ip_address(host.ip).is_loopback:
            findings.append(
                Finding(
                    f"hosts[{i}].{ip_field}",
                    f"'{host.ip}' is a loopback address; set hosts[{i}].nodeIP to the "
                    "machine's private address",
                )
            )
        elif host.ip in seen_ips:
            findings.append(
                Finding(
                    f"hosts[{i}].{ip_field}",
                    f"'{host.ip}' is also the node IP of hosts[{seen_ips[host.ip]}]",
                )
            )
        seen_names.setdefault(host.name, i)
        seen_ssh.setdefault((host.address, port), i)
        seen_ips.setdefault(host.ip, i)
    return findings


def _roles(cluster: Cluster) -> list[Finding]:
    findings = []
    if not cluster.control_planes:
        findings.append(Finding("hosts", "no host has the role control-plane"))
    etcd_hosts = cluster.with_role("etcd")
    if cluster.etcd.topology == "stacked":
        for i, host in enumerate(cluster.hosts):
            if host.has("etcd"):
                findings.append(
                    Finding(
                        f"hosts[{i}].roles",
                        "role etcd needs etcd.topology: external (stacked etcd runs on "
                        "the control-plane hosts)",
                    )
                )
    elif not etcd_hosts:
        findings.append(Finding("etcd.topology", "external etcd needs hosts with the role etcd"))
    members = len(cluster.etcd_members)
    if members and members % 2 == 0:
        findings.append(
            Finding(
                "etcd",
                f"{members} etcd members tolerate no more failures than {members - 1}; "
                "use an odd number (1, 3 or 5)",
                "warning",
            )
        )
    return findings


def _endpoint(cluster: Cluster) -> list[Finding]:
    endpoint = cluster.control_plane_endpoint
    findings = []
    if endpoint.type == "first-control-plane":
        if len(cluster.control_planes) > 1:
            findings.append(
                Finding(
                    "controlPlaneEndpoint.type",
                    f"{len(cluster.control_planes)} control-plane hosts need an endpoint "
                    "that survives losing one: use kube-vip or load-balancer with an address",
                )
            )
        if endpoint.address is not None:
            findings.append(
                Finding(
                    "controlPlaneEndpoint.address",
                    "not used with type first-control-plane; set type kube-vip or "
                    "load-balancer, or remove it",
                )
            )
        return findings + _api_server_port(endpoint.port, endpoint.type)
    if endpoint.address is None:
        return [Finding("controlPlaneEndpoint.address", f"required with type {endpoint.type}")]
    if endpoint.type == "kube-vip":
        try:
            ipaddress.ip_address(endpoint.address)
        except ValueError:
            findings.append(
                Finding(
                    "controlPlaneEndpoint.address",
                    f"'{endpoint.address}' must be an IP address for kube-vip",
                )
            )
        findings += _api_server_port(endpoint.port, endpoint.type)
    for i, host in enumerate(cluster.hosts):
        if endpoint.address in (host.address, host.node_ip):
            findings.append(
                Finding(
                    "controlPlaneEndpoint.address",
                    f"'{endpoint.address}' is hosts[{i}]'s own address; the endpoint needs "
                    "an address of its own",
                )
            )
    return findings


def _api_server_port(port: int, kind: str) -> list[Finding]:
    if port == API_SERVER_PORT:
        return []
    return [
        Finding(
            "controlPlaneEndpoint.port",
            f"must be {API_SERVER_PORT} with type {kind} (the API server's own port); "
            "only a load-balancer can listen elsewhere",
        )
    ]


def _subnets(cluster: Cluster) -> list[Finding]:
    net = cluster.networking
    pods = ipaddress.ip_network(net.pod_subnet)
    services = ipaddress.ip_network(net.service_subnet)
    findings = []
    if pods.version != services.version:
        findings.append(
            Finding("networking.serviceSubnet", "pod and service subnets differ in IP version")
        )
    elif pods.overlaps(services):
        findings.append(
            Finding(
                "networking.serviceSubnet",
                f"{services} overlaps networking.podSubnet {pods}",
            )
        )
    if services.version == 4 and services.prefixlen < 12:
        findings.append(
            Finding(
                "networking.serviceSubnet",
                f"{services} is too large; kubeadm allows at most a /12",
            )
        )
    if pods.version == 4 and pods.prefixlen > 24:
        findings.append(
            Finding(
                "networking.podSubnet",
                f"{pods} is smaller than the /24 each node takes from it",
            )
        )
    addresses = [
        (f"hosts[{i}].{field}", value)
        for i, host in enumerate(cluster.hosts)
        for field, value in (("address", host.address), ("nodeIP", host.node_ip))
        if value
    ]
    if cluster.control_plane_endpoint.address:
        addresses.append(("controlPlaneEndpoint.address", cluster.control_plane_endpoint.address))
    for subnet_field, subnet in (("podSubnet", pods), ("serviceSubnet", services)):
        for path, value in addresses:
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                continue  # a DNS name
            if address.version == subnet.version and address in subnet:
                findings.append(
                    Finding(f"networking.{subnet_field}", f"{subnet} contains {path} {value}")
                )
    return findings


def _etcd_release(cluster: Cluster) -> list[Finding]:
    version = cluster.etcd_version
    if cluster.etcd_sha256(version, "amd64") or cluster.etcd_sha256(version, "arm64"):
        return []
    return [
        Finding(
            "etcd.download.sha256",
            f"required for etcd {version}: k8sboot pins upstream's checksums for "
            f"{min(ETCD_CHECKSUMS)} to {max(ETCD_CHECKSUMS)} only",
        )
    ]


def _packages(cluster: Cluster) -> list[Finding]:
    packages = cluster.packages
    needed = {"mirror": "url", "directory": "path"}.get(packages.source)
    findings = []
    if needed and getattr(packages, needed) is None:
        findings.append(Finding(f"packages.{needed}", f"required with source {packages.source}"))
    for field, attr in (("url", "url"), ("keyUrl", "key_url"), ("path", "path")):
        used_by = {"url": "mirror", "keyUrl": "mirror", "path": "directory"}[field]
        if getattr(packages, attr) is not None and packages.source != used_by:
            findings.append(
                Finding(f"packages.{field}", f"only used with source {used_by}; remove it")
            )
    if packages.source == "mirror" and packages.key_url is None:
        findings.append(
            Finding(
                "packages.keyUrl",
                "not set: packages from the mirror are installed without a signature check",
                "warning",
            )
        )
    return findings


def check_local_files(cluster: Cluster) -> list[Finding]:
    """Files on this machine that the cluster file names (SSH keys, the backup key). Only
    `validate` asks: other commands run where such a file may not be (health
    from a laptop without the backup key), and those that use one read it then."""
    findings = []
    keys = [("ssh.key", cluster.ssh.key, "")]
    keys += [(f"hosts[{i}].ssh.key", h.ssh.key, "") for i, h in enumerate(cluster.hosts)]
    path = cluster.backup.encryption_key_file
    hint = f"; create a key with `k8sboot etcd keygen {path}`"
    keys.append(("backup.encryptionKeyFile", path, hint))
    for field, key, how in keys:
        if key is None or key.is_file():
            continue
        if key.is_dir():
            findings.append(Finding(field, f"{key} is a directory, not a key file"))
        else:
            findings.append(Finding(field, f"{key}: no such file{how}"))
    return findings
