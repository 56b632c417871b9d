"""The node side of kubeadm: kubelet configuration files, the kubelet service, waiting for
the kubelet and the API server."""

from __future__ import annotations

import copy
import http.client
import ipaddress
import os
import shlex
import subprocess
import time

import yaml

from .. import pki
from ..client import ApiError, Client
from ..paths import KUBELET_CONFIG, KUBELET_FLAGS_ENV, TEST_MODE, host
from .errors import KubeadmError


def kubelet_config(cluster: dict, user_doc: dict | None) -> dict:
    """The KubeletConfiguration kubeadm stores in kubelet-config and writes to config.yaml."""
    net = ipaddress.ip_network(cluster["networking"]["serviceSubnet"].split(",")[0], strict=False)
    base = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"cacheTTL": "0s", "enabled": True},
            "x509": {"clientCAFile": f"{cluster['certificatesDir']}/ca.crt"},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"},
        },
        "cgroupDriver": "systemd",
        "clusterDNS": [str(net[10])],
        "clusterDomain": cluster["networking"]["dnsDomain"],
        "containerRuntimeEndpoint": "",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "rotateCertificates": True,
        "staticPodPath": "/etc/kubernetes/manifests",
        "syncFrequency": "0s",
        "nodeStatusUpdateFrequency": "0s",
        "nodeStatusReportFrequency": "0s",
        "runtimeRequestTimeout": "0s",
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "streamingConnectionIdleTimeout": "0s",
        "volumeStatsAggPeriod": "0s",
        "memorySwap": {},
        "logging": {
            "flushFrequency": 0,
            "verbosity": 0,
            "options": {"json": {"infoBufferSize": "0"}, "text": {"infoBufferSize": "0"}},
        },
    }
    out = copy.deepcopy(base)
    for k, v in (user_doc or {}).items():
        out[k] = v
    return out


def write_kubelet_config(doc: dict, log) -> None:
    log(f'[kubelet-start] Writing kubelet configuration to file "{KUBELET_CONFIG}"')
    pki.write_file(KUBELET_CONFIG, yaml.safe_dump(doc, sort_keys=True).encode(), 0o644)


def write_flags(node_reg: dict, pause_image: str, register_taints: bool, log) -> None:
    args = [
        ("container-runtime-endpoint", node_reg["criSocket"]),
        ("pod-infra-container-image", pause_image),
    ]
    if register_taints and node_reg.get("taints"):
        taints = ",".join(
            f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}"
            for t in node_reg["taints"]
        )
        args.append(("register-with-taints", taints))
    import socket

    if node_reg["name"] != socket.gethostname().lower():
        args.append(("hostname-override", node_reg["name"]))
    values = dict(args)
    for a in node_reg.get("kubeletExtraArgs") or []:
        values[a["name"]] = a["value"]
    line = " ".join(f"--{k}={v}" for k, v in values.items())
    log(
        f'[kubelet-start] Writing kubelet environment file with flags to file "{KUBELET_FLAGS_ENV}"'
    )
    pki.write_file(KUBELET_FLAGS_ENV, f'KUBELET_KUBEADM_ARGS="{line}"\n'.encode(), 0o644)


def systemctl(*args: str) -> int:
    """systemctl on lab machines; in host tests K8SBOOT_STANDIN_SYSTEMCTL (or nothing)."""
    cmd = os.environ.get("K8SBOOT_STANDIN_SYSTEMCTL") if TEST_MODE else "systemctl"
    if not cmd:
        return 0
    return subprocess.run(
        [*shlex.split(cmd), *args],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode


def kubelet_healthz_port() -> int:
    override = os.environ.get("K8SBOOT_STANDIN_KUBELET_HEALTHZ_PORT") if TEST_MODE else None
    if override:
        return int(override)
    try:
        with open(host(KUBELET_CONFIG)) as f:
            return int((yaml.safe_load(f) or {}).get("healthzPort", 10248))
    except (OSError, ValueError):
        return 10248


def wait_kubelet(timeout: float, log) -> None:
    port = kubelet_healthz_port()
    log(
        f"[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:{port}/healthz. "
        f"This can take up to {int(timeout // 60)}m0s"
    )
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                log(f"[kubelet-check] The kubelet is healthy after {time.monotonic() - start:.6f}s")
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise KubeadmError(
        "The HTTP call equal to 'curl -sSL http://127.0.0.1:"
        f'{port}/healthz\' returned error: Get "http://127.0.0.1:{port}/healthz": dial tcp '
        f"127.0.0.1:{port}: connect: connection refused.\n\nUnfortunately, an error has "
        "occurred, likely caused by:\n\t- The kubelet is not running\n\t- The kubelet is "
        "unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)"
        "\n\nIf you are on a systemd-powered system, you can try to troubleshoot the error with "
        "the following commands:\n\t- 'systemctl status kubelet'\n\t- 'journalctl -xeu kubelet'"
    )


def wait_api(client: Client, timeout: float, log, what: str = "[api-check]") -> None:
    log(f"{what} Waiting for a healthy API server. This can take up to {int(timeout // 60)}m0s")
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        try:
            client.request("GET", "/livez")
            client.request("GET", "/readyz")
            log(f"{what} The API server is healthy after {time.monotonic() - start:.6f}s")
            return
        except (ApiError, OSError) as e:
            last = e
        time.sleep(0.5)
    raise KubeadmError(f"failed while waiting for the API server: {last}")
