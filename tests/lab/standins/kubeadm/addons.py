"""The essential addons kubeadm applies: CoreDNS and kube-proxy."""

from __future__ import annotations

import ipaddress

import yaml

from .. import versions
from ..client import ApiError, Client


def _apply(client: Client, objs: list[dict]) -> None:
    for o in objs:
        if o["kind"] == "Service":
            _create_or_update_service(client, o)
        else:
            client.create_or_update(o)


def _create_or_update_service(client: Client, service: dict) -> None:
    """phases/addons/dns/dns.go createDNSService: a second create of kube-dns, whose clusterIP
    is fixed, is refused as Invalid ("provided IP is already allocated") before it could be
    AlreadyExists, so kubeadm takes either as "exists" and updates (upgrade re-applies it)."""
    try:
        client.create(service)
    except ApiError as e:
        if e.status not in (409, 422):
            raise
        client.update(service)


def coredns(client: Client, cluster: dict) -> None:
    net = ipaddress.ip_network(cluster["networking"]["serviceSubnet"].split(",")[0], strict=False)
    repo = cluster.get("imageRepository", "registry.k8s.io")
    tag = versions.COREDNS_TAG[versions.minor(cluster["kubernetesVersion"])]
    domain = cluster["networking"]["dnsDomain"]
    corefile = (
        ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n"
        f"    kubernetes {domain} in-addr.arpa ip6.arpa {{\n       pods insecure\n"
        "       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n"
        "    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n"
        "    }\n    cache 30 {\n       disable success cluster.local\n       disable denial "
        "cluster.local\n    }\n    loop\n    reload\n    loadbalance\n}\n"
    )
    labels = {"k8s-app": "kube-dns"}
    _apply(
        client,
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "coredns", "namespace": "kube-system"},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "system:coredns"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["endpoints", "services", "pods", "namespaces"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "system:coredns"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:coredns",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}
                ],
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "coredns", "namespace": "kube-system"},
                "data": {"Corefile": corefile},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": labels},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "priorityClassName": "system-cluster-critical",
                            "serviceAccountName": "coredns",
                            "tolerations": [
                                {"key": "CriticalAddonsOnly", "operator": "Exists"},
                                {
                                    "key": "node-role.kubernetes.io/control-plane",
                                    "effect": "NoSchedule",
                                },
                            ],
                            "nodeSelector": {"kubernetes.io/os": "linux"},
                            "containers": [
                                {
                                    "name": "coredns",
                                    "image": f"{repo}/coredns/coredns:{tag}",
                                    "args": ["-conf", "/etc/coredns/Corefile"],
                                    "ports": [
                                        {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                        {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                        {
                                            "containerPort": 9153,
                                            "name": "metrics",
                                            "protocol": "TCP",
                                        },
                                    ],
                                    "volumeMounts": [
                                        {
                                            "name": "config-volume",
                                            "mountPath": "/etc/coredns",
                                            "readOnly": True,
                                        }
                                    ],
                                }
                            ],
                            "dnsPolicy": "Default",
                            "volumes": [
                                {
                                    "name": "config-volume",
                                    "configMap": {
                                        "name": "coredns",
                                        "items": [{"key": "Corefile", "path": "Corefile"}],
                                    },
                                }
                            ],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "kube-dns",
                    "namespace": "kube-system",
                    "labels": {
                        **labels,
                        "kubernetes.io/cluster-service": "true",
                        "kubernetes.io/name": "CoreDNS",
                    },
                    "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
                },
                "spec": {
                    "clusterIP": str(net[10]),
                    "selector": labels,
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                        {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                    ],
                },
            },
        ],
    )


def kube_proxy(client: Client, cluster: dict, server: str, proxy_doc: dict | None) -> None:
    repo = cluster.get("imageRepository", "registry.k8s.io")
    conf = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "bindAddress": "0.0.0.0",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        "clusterCIDR": cluster["networking"].get("podSubnet", ""),
        "mode": "",
    }
    conf.update(proxy_doc or {})
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "default",
                "cluster": {
                    "certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                    "server": server,
                },
            }
        ],
        "contexts": [
            {
                "name": "default",
                "context": {"cluster": "default", "namespace": "default", "user": "default"},
            }
        ],
        "current-context": "default",
        "users": [
            {
                "name": "default",
                "user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
            }
        ],
    }
    labels = {"k8s-app": "kube-proxy"}
    _apply(
        client,
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kubeadm:node-proxier"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:node-proxier",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system"}
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": ["kube-proxy"],
                        "verbs": ["get"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "kube-proxy",
                },
                "subjects": [
                    {"kind": "Group", "name": "system:bootstrappers:kubeadm:default-node-token"}
                ],
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "kube-proxy",
                    "namespace": "kube-system",
                    "labels": {"app": "kube-proxy"},
                },
                "data": {
                    "config.conf": yaml.safe_dump(conf, sort_keys=True),
                    "kubeconfig.conf": yaml.safe_dump(kubeconfig, sort_keys=False),
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "updateStrategy": {"type": "RollingUpdate"},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "priorityClassName": "system-node-critical",
                            "hostNetwork": True,
                            "serviceAccountName": "kube-proxy",
                            "nodeSelector": {"kubernetes.io/os": "linux"},
                            "tolerations": [{"operator": "Exists"}],
                            "containers": [
                                {
                                    "name": "kube-proxy",
                                    "image": f"{repo}/kube-proxy:{cluster['kubernetesVersion']}",
                                    "command": [
                                        "/usr/local/bin/kube-proxy",
                                        "--config=/var/lib/kube-proxy/config.conf",
                                        "--hostname-override=$(NODE_NAME)",
                                    ],
                                    "securityContext": {"privileged": True},
                                    "volumeMounts": [
                                        {"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"},
                                        {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
                                        {
                                            "name": "lib-modules",
                                            "mountPath": "/lib/modules",
                                            "readOnly": True,
                                        },
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                                {
                                    "name": "xtables-lock",
                                    "hostPath": {
                                        "path": "/run/xtables.lock",
                                        "type": "FileOrCreate",
                                    },
                                },
                                {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                            ],
                        },
                    },
                },
            },
        ],
    )
