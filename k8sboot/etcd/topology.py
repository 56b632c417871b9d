"""Where etcd lives in each topology: its members, their URLs and data directories, the
certificates etcdctl uses on a host, and the files k8sboot keeps for external etcd.

Stacked etcd is kubeadm's static pod on every control plane (certificates under
/etc/kubernetes/pki/etcd). External etcd runs on the hosts with the role etcd as the
distribution's `etcd` systemd service, configured by k8sboot, with k8sboot's own CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from k8sboot.etcd.client import STACKED_TLS, EtcdTLS, client_url, peer_url
from k8sboot.etcd.pki import CertSpec
from k8sboot.facts import Facts
from k8sboot.kubeadm_node import (
    APISERVER_ETCD_CLIENT_CERT,
    APISERVER_ETCD_CLIENT_KEY,
    ETCD_CA_CERT,
    ETCD_MEMBER_DIR,
    ETCD_PKI_DIR,
)
from k8sboot.spec import Cluster, Host
from k8sboot.spec.model import is_ip_address

DEFAULT_QUOTA = 2 * 1024**3  # etcd's default --quota-backend-bytes

# External etcd, on the etcd hosts.
EXTERNAL_PKI = PurePosixPath("/etc/etcd/pki")
EXTERNAL_ENV = PurePosixPath("/etc/etcd/k8sboot.env")
EXTERNAL_BOOTSTRAP_ENV = PurePosixPath("/etc/etcd/k8sboot-bootstrap.env")
EXTERNAL_UNIT = PurePosixPath("/etc/systemd/system/etcd.service")
EXTERNAL_TLS = EtcdTLS(
    str(EXTERNAL_PKI / "ca.crt"),
    str(EXTERNAL_PKI / "etcdctl.crt"),
    str(EXTERNAL_PKI / "etcdctl.key"),
)
# ... and what kubeadm's ClusterConfiguration names on the control planes (init.yaml.j2).
APISERVER_CLIENT_TLS = EtcdTLS(ETCD_CA_CERT, APISERVER_ETCD_CLIENT_CERT, APISERVER_ETCD_CLIENT_KEY)


def external(cluster: Cluster) -> bool:
    return cluster.etcd.topology == "external"


def members(cluster: Cluster) -> list[Host]:
    return cluster.etcd_members


def endpoint(host: Host) -> str:
    return client_url(host.ip)


def tls_on(cluster: Cluster, host: Host) -> EtcdTLS:
    """The CA and client certificate etcdctl uses on `host`."""
    if not external(cluster):
        return STACKED_TLS
    return EXTERNAL_TLS if host.has("etcd") else APISERVER_CLIENT_TLS


def tool_hosts(cluster: Cluster) -> list[Host]:
    """Hosts that can run etcdctl against the cluster, best first: the members, then (for
    external etcd) the control planes with the API server's client certificate."""
    hosts = list(members(cluster))
    if external(cluster):
        hosts += [h for h in cluster.control_planes if h not in hosts]
    return hosts


def lost_hosts(cluster: Cluster, facts: Facts, answers: bool | None = None) -> str | None:
    """When etcd has no quorum (`answers`, else judged from the probes: too few members
    reachable with etcd running) and the cluster file still lists etcd members or control
    planes that cannot be reached: which, and what to do if they are lost for good."""
    hosts = members(cluster)

    def running(host: Host) -> bool:
        found = facts.hosts.get(host.name)
        if found is None:
            return False
        return found.active("etcd") if external(cluster) else "etcd.yaml" in found.manifests

    if answers is None:
        answers = sum(map(running, hosts)) > len(hosts) // 2
    names = dict.fromkeys(h.name for h in [*hosts, *cluster.control_planes])
    down = [name for name in names if name not in facts.hosts]
    seen = [facts.hosts[name] for name in names if name in facts.hosts]
    if seen and not any(f.initialised_control_plane or f.exists(ETCD_MEMBER_DIR) for f in seen):
        return None  # a cluster not set up yet has no etcd to lose
    if answers or not down:
        return None
    return (
        f"etcd has no quorum and {', '.join(down)} cannot be reached: if "
        f"{'they are' if len(down) > 1 else 'it is'} lost, list the replacements in the "
        "cluster file instead (README: Restoring after losing etcd)"
    )


def initial_cluster(hosts: list[Host]) -> str:
    return ",".join(f"{h.name}={peer_url(h.ip)}" for h in hosts)


def names_of(host: Host) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS names and IP addresses an etcd member's certificates carry."""
    named = not is_ip_address(host.address)  # an SSH address may be a DNS name
    dns = tuple(dict.fromkeys([host.name, "localhost", *([host.address] if named else [])]))
    ips = tuple(dict.fromkeys([host.ip, *([] if named else [host.address]), "127.0.0.1", "::1"]))
    return dns, ips


@dataclass(frozen=True)
class CertFile:
    """A certificate k8sboot issues, and where it goes."""

    name: str  # its name in the local record of issued certificates
    cert: str
    key: str
    spec: CertSpec


def external_certs(cluster: Cluster, host: Host) -> list[CertFile]:
    """The certificates a host needs for external etcd (the CA certificate aside)."""
    files = []
    if host.has("etcd"):
        dns, ips = names_of(host)
        for kind in ("server", "peer"):
            files.append(
                CertFile(
                    kind,
                    str(EXTERNAL_PKI / f"{kind}.crt"),
                    str(EXTERNAL_PKI / f"{kind}.key"),
                    CertSpec(host.name, dns_names=dns, ip_addresses=ips, server=True),
                )
            )
        files.append(
            CertFile(
                "etcdctl",
                EXTERNAL_TLS.cert,
                EXTERNAL_TLS.key,
                CertSpec("k8sboot-etcdctl", organization="system:masters"),
            )
        )
    if host.has("control-plane"):
        files.append(
            CertFile(
                "apiserver-etcd-client",
                APISERVER_CLIENT_TLS.cert,
                APISERVER_CLIENT_TLS.key,
                CertSpec("kube-apiserver-etcd-client", organization="system:masters"),
            )
        )
    return files


def ca_path_on(host: Host) -> str:
    return EXTERNAL_TLS.cacert if host.has("etcd") else APISERVER_CLIENT_TLS.cacert


def stacked_member_certs(host: Host) -> list[CertFile]:
    """kubeadm's etcd server and peer certificates of a control plane (re-issued by a
    restore onto new addresses)."""
    dns, ips = names_of(host)
    return [
        CertFile(
            kind,
            f"{ETCD_PKI_DIR}/{kind}.crt",
            f"{ETCD_PKI_DIR}/{kind}.key",
            CertSpec(host.name, dns_names=dns, ip_addresses=ips, server=True),
        )
        for kind in ("server", "peer")
    ]


def probe_files(cluster: Cluster) -> list[str]:
    """Files whose hashes `up` needs from every host to plan external etcd."""
    if not external(cluster):
        return []
    paths = [EXTERNAL_TLS.cacert, APISERVER_CLIENT_TLS.cacert]
    for host in tool_hosts(cluster):
        for cert in external_certs(cluster, host):
            paths += [cert.cert, cert.key]
    return [*dict.fromkeys(paths), str(EXTERNAL_ENV), str(EXTERNAL_UNIT)]
