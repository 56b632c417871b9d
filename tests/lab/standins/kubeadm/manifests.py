"""Static Pod manifests for etcd and the control-plane components, as kubeadm writes them."""

from __future__ import annotations

import os

import yaml

from .. import pki, versions
from ..paths import MANIFESTS_DIR, host
from .certs import endpoint_host  # noqa: F401 (re-exported for callers)
from .config import arg_value


def _merge_args(defaults: list[tuple[str, str]], extra: list[dict]) -> list[str]:
    values = dict(defaults)
    for a in extra:
        values[a["name"]] = a["value"]
    return [f"--{k}={v}" for k, v in sorted(values.items())]


def _probe(
    host_: str, path: str, port: int, scheme: str, kind: str, timeout_s: float = 240
) -> dict:
    probe = {
        "httpGet": {"host": host_, "path": path, "port": port, "scheme": scheme},
        "timeoutSeconds": 15,
    }
    if kind == "liveness":
        probe.update(initialDelaySeconds=10, periodSeconds=10, failureThreshold=8)
    elif kind == "readiness":
        probe.update(periodSeconds=1, failureThreshold=3)
    else:
        probe.update(
            initialDelaySeconds=10, periodSeconds=10, failureThreshold=max(1, int(timeout_s // 10))
        )
    return probe


def _vol(name: str, path: str, typ: str = "DirectoryOrCreate") -> dict:
    return {"name": name, "hostPath": {"path": path, "type": typ}}


def _pod(name: str, container: dict, volumes: list[dict], annotations: dict | None = None) -> dict:
    md: dict = {
        "creationTimestamp": None,
        "labels": {"component": name, "tier": "control-plane"},
        "name": name,
        "namespace": "kube-system",
    }
    if annotations:
        md["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": {
            "containers": [container],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": volumes,
        },
        "status": {},
    }


def image(cluster: dict, component: str) -> str:
    repo = cluster.get("imageRepository", "registry.k8s.io")
    if component == "etcd":
        local = cluster.get("etcd", {}).get("local", {})
        tag = local.get("imageTag") or versions.etcd_tag(cluster["kubernetesVersion"])
        return f"{local.get('imageRepository') or repo}/etcd:{tag}"
    return f"{repo}/{component}:{cluster['kubernetesVersion']}"


def etcd_pod(
    cluster: dict,
    node_name: str,
    advertise: str,
    initial_cluster: list[tuple[str, str]] | None = None,
) -> dict:
    local = cluster["etcd"]["local"]
    pki_dir = cluster["certificatesDir"]
    client_url, peer_url = f"https://{advertise}:2379", f"https://{advertise}:2380"
    args = [
        ("name", node_name),
        ("experimental-initial-corrupt-check", "true"),
        ("listen-client-urls", f"https://127.0.0.1:2379,{client_url}"),
        ("advertise-client-urls", client_url),
        ("listen-peer-urls", peer_url),
        ("initial-advertise-peer-urls", peer_url),
        ("data-dir", local["dataDir"]),
        ("cert-file", f"{pki_dir}/etcd/server.crt"),
        ("key-file", f"{pki_dir}/etcd/server.key"),
        ("trusted-ca-file", f"{pki_dir}/etcd/ca.crt"),
        ("client-cert-auth", "true"),
        ("peer-cert-file", f"{pki_dir}/etcd/peer.crt"),
        ("peer-key-file", f"{pki_dir}/etcd/peer.key"),
        ("peer-trusted-ca-file", f"{pki_dir}/etcd/ca.crt"),
        ("peer-client-cert-auth", "true"),
        ("snapshot-count", "10000"),
        ("listen-metrics-urls", "http://127.0.0.1:2381"),
        ("experimental-watch-progress-notify-interval", "5s"),
    ]
    if initial_cluster:
        args.append(("initial-cluster", ",".join(f"{n}={u}" for n, u in initial_cluster)))
        args.append(("initial-cluster-state", "existing"))
    else:
        args.append(("initial-cluster", f"{node_name}={peer_url}"))
    container = {
        "command": ["etcd", *_merge_args(args, local.get("extraArgs") or [])],
        "image": image(cluster, "etcd"),
        "imagePullPolicy": "IfNotPresent",
        "name": "etcd",
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
        "volumeMounts": [
            {"mountPath": local["dataDir"], "name": "etcd-data"},
            {"mountPath": f"{pki_dir}/etcd", "name": "etcd-certs"},
        ],
    }
    if versions.minor(cluster["kubernetesVersion"]) >= 31:
        container["livenessProbe"] = _probe("127.0.0.1", "/livez", 2381, "HTTP", "liveness")
        container["readinessProbe"] = _probe("127.0.0.1", "/readyz", 2381, "HTTP", "readiness")
        container["startupProbe"] = _probe("127.0.0.1", "/readyz", 2381, "HTTP", "startup")
    else:
        container["livenessProbe"] = _probe(
            "127.0.0.1", "/health?exclude=NOSPACE&serializable=true", 2381, "HTTP", "liveness"
        )
        container["startupProbe"] = _probe(
            "127.0.0.1", "/health?serializable=false", 2381, "HTTP", "startup"
        )
    return _pod(
        "etcd",
        container,
        [_vol("etcd-certs", f"{pki_dir}/etcd"), _vol("etcd-data", local["dataDir"])],
        {"kubeadm.kubernetes.io/etcd.advertise-client-urls": client_url},
    )


COMMON_VOLUMES = [
    ("ca-certs", "/etc/ssl/certs"),
    ("etc-ca-certificates", "/etc/ca-certificates"),
    ("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates"),
    ("usr-share-ca-certificates", "/usr/share/ca-certificates"),
]


def _mounts(extra: list[tuple[str, str, str]]):
    vols = [_vol(n, p) for n, p in COMMON_VOLUMES] + [_vol(n, p, t) for n, p, t in extra]
    mounts = [{"mountPath": p, "name": n, "readOnly": True} for n, p in COMMON_VOLUMES]
    mounts += [{"mountPath": p, "name": n, "readOnly": n != "flexvolume-dir"} for n, p, _ in extra]
    return sorted(vols, key=lambda v: v["name"]), sorted(mounts, key=lambda m: m["name"])


def apiserver_pod(cluster: dict, advertise: str, port: int) -> dict:
    p = cluster["certificatesDir"]
    net = cluster["networking"]
    if "external" in cluster["etcd"]:
        ext = cluster["etcd"]["external"]
        etcd_args = [
            ("etcd-servers", ",".join(ext["endpoints"])),
            ("etcd-cafile", ext.get("caFile", "")),
            ("etcd-certfile", ext.get("certFile", "")),
            ("etcd-keyfile", ext.get("keyFile", "")),
        ]
    else:
        etcd_args = [
            ("etcd-servers", "https://127.0.0.1:2379"),
            ("etcd-cafile", f"{p}/etcd/ca.crt"),
            ("etcd-certfile", f"{p}/apiserver-etcd-client.crt"),
            ("etcd-keyfile", f"{p}/apiserver-etcd-client.key"),
        ]
    args = [
        ("advertise-address", advertise),
        ("allow-privileged", "true"),
        ("authorization-mode", "Node,RBAC"),
        ("client-ca-file", f"{p}/ca.crt"),
        ("enable-admission-plugins", "NodeRestriction"),
        ("enable-bootstrap-token-auth", "true"),
        *etcd_args,
        ("kubelet-client-certificate", f"{p}/apiserver-kubelet-client.crt"),
        ("kubelet-client-key", f"{p}/apiserver-kubelet-client.key"),
        ("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname"),
        ("proxy-client-cert-file", f"{p}/front-proxy-client.crt"),
        ("proxy-client-key-file", f"{p}/front-proxy-client.key"),
        ("requestheader-allowed-names", "front-proxy-client"),
        ("requestheader-client-ca-file", f"{p}/front-proxy-ca.crt"),
        ("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
        ("requestheader-group-headers", "X-Remote-Group"),
        ("requestheader-username-headers", "X-Remote-User"),
        ("secure-port", str(port)),
        ("service-account-issuer", f"https://kubernetes.default.svc.{net['dnsDomain']}"),
        ("service-account-key-file", f"{p}/sa.pub"),
        ("service-account-signing-key-file", f"{p}/sa.key"),
        ("service-cluster-ip-range", net["serviceSubnet"]),
        ("tls-cert-file", f"{p}/apiserver.crt"),
        ("tls-private-key-file", f"{p}/apiserver.key"),
    ]
    extra = cluster["apiServer"].get("extraArgs") or []
    probe_host = arg_value(extra, "advertise-address") or advertise
    vols, mounts = _mounts([("k8s-certs", p, "DirectoryOrCreate")])
    container = {
        "command": ["kube-apiserver", *_merge_args(args, extra)],
        "image": image(cluster, "kube-apiserver"),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": _probe(probe_host, "/livez", port, "HTTPS", "liveness"),
        "name": "kube-apiserver",
        "readinessProbe": _probe(probe_host, "/readyz", port, "HTTPS", "readiness"),
        "resources": {"requests": {"cpu": "250m"}},
        "startupProbe": _probe(probe_host, "/livez", port, "HTTPS", "startup"),
        "volumeMounts": mounts,
    }
    return _pod(
        "kube-apiserver",
        container,
        vols,
        {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{advertise}:{port}"},
    )


def controller_manager_pod(cluster: dict) -> dict:
    p = cluster["certificatesDir"]
    conf = "/etc/kubernetes/controller-manager.conf"
    args = [
        ("authentication-kubeconfig", conf),
        ("authorization-kubeconfig", conf),
        ("bind-address", "127.0.0.1"),
        ("client-ca-file", f"{p}/ca.crt"),
        ("cluster-name", cluster["clusterName"]),
        ("cluster-signing-cert-file", f"{p}/ca.crt"),
        ("cluster-signing-key-file", f"{p}/ca.key"),
        ("controllers", "*,bootstrapsigner,tokencleaner"),
        ("kubeconfig", conf),
        ("leader-elect", "true"),
        ("requestheader-client-ca-file", f"{p}/front-proxy-ca.crt"),
        ("root-ca-file", f"{p}/ca.crt"),
        ("service-account-private-key-file", f"{p}/sa.key"),
        ("service-cluster-ip-range", cluster["networking"]["serviceSubnet"]),
        ("use-service-account-credentials", "true"),
    ]
    if cluster["networking"].get("podSubnet"):
        args += [
            ("allocate-node-cidrs", "true"),
            ("cluster-cidr", cluster["networking"]["podSubnet"]),
        ]
    vols, mounts = _mounts(
        [
            (
                "flexvolume-dir",
                "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
                "DirectoryOrCreate",
            ),
            ("k8s-certs", p, "DirectoryOrCreate"),
            ("kubeconfig", conf, "FileOrCreate"),
        ]
    )
    container = {
        "command": [
            "kube-controller-manager",
            *_merge_args(args, cluster["controllerManager"].get("extraArgs") or []),
        ],
        "image": image(cluster, "kube-controller-manager"),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": _probe("127.0.0.1", "/healthz", 10257, "HTTPS", "liveness"),
        "name": "kube-controller-manager",
        "resources": {"requests": {"cpu": "200m"}},
        "startupProbe": _probe("127.0.0.1", "/healthz", 10257, "HTTPS", "startup"),
        "volumeMounts": mounts,
    }
    return _pod("kube-controller-manager", container, vols)


def scheduler_pod(cluster: dict) -> dict:
    conf = "/etc/kubernetes/scheduler.conf"
    args = [
        ("authentication-kubeconfig", conf),
        ("authorization-kubeconfig", conf),
        ("bind-address", "127.0.0.1"),
        ("kubeconfig", conf),
        ("leader-elect", "true"),
    ]
    container = {
        "command": [
            "kube-scheduler",
            *_merge_args(args, cluster["scheduler"].get("extraArgs") or []),
        ],
        "image": image(cluster, "kube-scheduler"),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": _probe("127.0.0.1", "/healthz", 10259, "HTTPS", "liveness"),
        "name": "kube-scheduler",
        "resources": {"requests": {"cpu": "100m"}},
        "startupProbe": _probe("127.0.0.1", "/healthz", 10259, "HTTPS", "startup"),
        "volumeMounts": [{"mountPath": conf, "name": "kubeconfig", "readOnly": True}],
    }
    return _pod("kube-scheduler", container, [_vol("kubeconfig", conf, "FileOrCreate")])


def write(name: str, pod: dict, directory: str = MANIFESTS_DIR) -> str:
    path = f"{directory}/{name}.yaml"
    os.makedirs(host(directory), exist_ok=True)
    pki.write_file(path, yaml.safe_dump(pod, sort_keys=False).encode(), 0o600)
    return path


def read(name: str, directory: str = MANIFESTS_DIR) -> dict | None:
    try:
        with open(host(f"{directory}/{name}.yaml")) as f:
            return yaml.safe_load(f)
    except OSError:
        return None
