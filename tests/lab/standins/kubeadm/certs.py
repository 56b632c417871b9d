"""The certificates and kubeconfig files kubeadm creates, with its names, subjects and SANs."""

from __future__ import annotations

import ipaddress

from .. import kubeconfig, pki
from ..paths import KUBERNETES_DIR, host

CAS = {"ca": "kubernetes", "front-proxy-ca": "front-proxy-ca", "etcd/ca": "etcd-ca"}


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def endpoint_host(endpoint: str) -> str:
    if not endpoint:
        return ""
    if endpoint.startswith("["):
        return endpoint[1 : endpoint.index("]")]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def service_ip(cluster: dict) -> str:
    net = ipaddress.ip_network(cluster["networking"]["serviceSubnet"].split(",")[0], strict=False)
    return str(next(net.hosts()))


def leaf_specs(
    cluster: dict, node_name: str, advertise: str
) -> dict[str, tuple[str, pki.CertSpec]]:
    """name -> (CA it is signed by, spec)."""
    domain = cluster["networking"]["dnsDomain"]
    dns = [
        node_name,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
    ]
    ips = [service_ip(cluster), advertise]
    extra = [
        endpoint_host(cluster.get("controlPlaneEndpoint", "")),
        *list(cluster["apiServer"].get("certSANs") or []),
    ]
    for s in extra:
        if s:
            (ips if _is_ip(s) else dns).append(s)
    etcd_dns, etcd_ips = [node_name, "localhost"], [advertise, "127.0.0.1", "::1"]
    specs = {
        "apiserver": ("ca", pki.CertSpec("kube-apiserver", server=True, dns=dns, ips=ips)),
        "apiserver-kubelet-client": (
            "ca",
            pki.CertSpec("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",), client=True),
        ),
        "front-proxy-client": ("front-proxy-ca", pki.CertSpec("front-proxy-client", client=True)),
    }
    if "local" in cluster.get("etcd", {}):
        local = cluster["etcd"]["local"]
        specs.update(
            {
                "etcd/server": (
                    "etcd/ca",
                    pki.CertSpec(
                        node_name,
                        server=True,
                        client=True,
                        dns=etcd_dns + list(local.get("serverCertSANs") or []),
                        ips=etcd_ips,
                    ),
                ),
                "etcd/peer": (
                    "etcd/ca",
                    pki.CertSpec(
                        node_name,
                        server=True,
                        client=True,
                        dns=etcd_dns + list(local.get("peerCertSANs") or []),
                        ips=etcd_ips,
                    ),
                ),
                "etcd/healthcheck-client": (
                    "etcd/ca",
                    pki.CertSpec("kube-etcd-healthcheck-client", client=True),
                ),
                "apiserver-etcd-client": (
                    "etcd/ca",
                    pki.CertSpec("kube-apiserver-etcd-client", client=True),
                ),
            }
        )
    # Split DNS names that are IPs (certSANs may hold either).
    for _, spec in specs.values():
        spec.ips += [d for d in spec.dns if _is_ip(d)]
        spec.dns = [d for d in spec.dns if not _is_ip(d)]
    return specs


def create_cas(pki_dir: str, local_etcd: bool, log) -> None:
    for name, cn in CAS.items():
        if name == "etcd/ca" and not local_etcd:
            continue
        base = f"{pki_dir}/{name}"
        if pki.exists(base + ".crt"):
            log(f"[certs] Using existing {name.replace('/', '-')} certificate authority")
            continue
        log(f'[certs] Generating "{name.replace("/", "-")}" certificate and key')
        cert, key = pki.new_ca(cn)
        pki.write_pair(base, cert, key)


def create_leaves(cluster: dict, node_name: str, advertise: str, log) -> None:
    pki_dir = cluster["certificatesDir"]
    for name, (ca_name, spec) in leaf_specs(cluster, node_name, advertise).items():
        base = f"{pki_dir}/{name}"
        if pki.exists(base + ".crt"):
            log(f"[certs] Using existing {name.replace('/', '-')} certificate and key on disk")
            continue
        ca_cert, ca_key = pki.read_pair(f"{pki_dir}/{ca_name}")
        log(f'[certs] Generating "{name}" certificate and key')
        if spec.server:
            log(
                f"[certs] {name} serving cert is signed for DNS names [{' '.join(spec.dns)}] "
                f"and IPs [{' '.join(spec.ips)}]"
            )
        cert, key = pki.sign(spec, ca_cert, ca_key)
        pki.write_pair(base, cert, key)
    if not pki.exists(f"{pki_dir}/sa.key"):
        log('[certs] Generating "sa" key and public key')
        key = pki.new_key()
        pki.write_file(f"{pki_dir}/sa.key", pki.key_pem(key), 0o600)
        pki.write_file(f"{pki_dir}/sa.pub", pki.public_pem(key), 0o644)


def server_url(address: str, port: int | str) -> str:
    host_part = f"[{address}]" if ":" in address else address
    return f"https://{host_part}:{port}"


def control_plane_url(cluster: dict, advertise: str, port: int) -> str:
    ep = cluster.get("controlPlaneEndpoint")
    if ep:
        return "https://" + ep if ":" in ep.rsplit("]", 1)[-1] else f"https://{ep}:{port}"
    return server_url(advertise, port)


KUBECONFIGS = {
    "admin.conf": ("kubernetes-admin", ("kubeadm:cluster-admins",), "endpoint"),
    "super-admin.conf": ("kubernetes-super-admin", ("system:masters",), "endpoint"),
    "kubelet.conf": (None, ("system:nodes",), "endpoint"),
    "controller-manager.conf": ("system:kube-controller-manager", (), "local"),
    "scheduler.conf": ("system:kube-scheduler", (), "local"),
}


def create_kubeconfigs(
    cluster: dict, node_name: str, advertise: str, port: int, names, log
) -> None:
    pki_dir = cluster["certificatesDir"]
    ca_cert, ca_key = pki.read_pair(f"{pki_dir}/ca")
    log(f'[kubeconfig] Using kubeconfig folder "{KUBERNETES_DIR}"')
    for name in names:
        path = f"{KUBERNETES_DIR}/{name}"
        if pki.exists(path):
            log(f'[kubeconfig] Using existing kubeconfig file: "{path}"')
            continue
        cn, orgs, where = KUBECONFIGS[name]
        cn = cn or f"system:node:{node_name}"
        server = (
            control_plane_url(cluster, advertise, port)
            if where == "endpoint"
            else server_url(advertise, port)
        )
        log(f'[kubeconfig] Writing "{name}" kubeconfig file')
        cert, key = pki.sign(pki.CertSpec(cn, tuple(orgs), client=True), ca_cert, ca_key)
        kubeconfig.write(
            path,
            kubeconfig.build(
                cluster["clusterName"],
                server,
                pki.cert_pem(ca_cert),
                cn,
                pki.cert_pem(cert),
                pki.key_pem(key),
            ),
        )


def ca_hash(pki_dir: str) -> str:
    with open(host(f"{pki_dir}/ca.crt"), "rb") as f:
        return pki.ca_cert_hash(pki.load_cert(f.read()))


def user_kubeconfig(
    cluster: dict,
    advertise: str,
    port: int,
    client_name: str,
    orgs: list[str],
    not_after,
    token: str = "",
) -> dict:
    """`kubeadm kubeconfig user`: a kubeconfig for another user, server = the control-plane
    endpoint (else the local API endpoint), with a token, or with a client certificate
    (CN = client_name, O = orgs) signed by the cluster CA from notBefore = the CA's to
    `not_after` (phases/kubeconfig/kubeconfig.go WriteKubeConfigWithClientCert and
    WithToken; util/pkiutil/pki_helpers.go NewSignedCert; v1.31-v1.33)."""
    ca_base = f"{cluster['certificatesDir']}/ca"
    server = control_plane_url(cluster, advertise, port)
    if token:
        with open(host(ca_base + ".crt"), "rb") as f:
            ca_pem = f.read()
        return kubeconfig.build(cluster["clusterName"], server, ca_pem, client_name, token=token)
    ca_cert, ca_key = pki.read_pair(ca_base)
    cert, key = pki.sign(
        pki.CertSpec(client_name, tuple(orgs), client=True),
        ca_cert,
        ca_key,
        period=(pki.not_before(ca_cert), not_after),
    )
    return kubeconfig.build(
        cluster["clusterName"],
        server,
        pki.cert_pem(ca_cert),
        client_name,
        pki.cert_pem(cert),
        pki.key_pem(key),
    )
