"""OS preparation, containerd and the Kubernetes packages: Ansible roles, run only on
the hosts (and only the roles) whose probe shows drift."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from k8sboot.actions import Action, Converge
from k8sboot.facts import HostFacts
from k8sboot.resources import data_dir
from k8sboot.spec import Cluster, Host
from k8sboot.steps.base import Context, Step
from k8sboot.versions import KubeVersion

PLAYBOOK = "node.yml"
UPSTREAM_REPOSITORY = "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
DESIRED_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}


@cache
def _role_files_digest(role: str) -> str:
    """The role's own files and the entry playbook: editing them means running again."""
    digest = hashlib.sha256()
    playbooks = data_dir("playbooks")
    for path in [playbooks / PLAYBOOK, *sorted((playbooks / "roles" / role).rglob("*"))]:
        if path.is_file():
            digest.update(str(path.relative_to(playbooks)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(role: str, role_vars: dict[str, Any]) -> str:
    payload = _role_files_digest(role) + json.dumps(role_vars, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def role_vars(cluster: Cluster, host: Host, found: HostFacts) -> dict[str, dict[str, Any]]:
    """Each role's variables for this host: desired state only (plus the container flag,
    which changes what a role can do)."""
    roles: dict[str, dict[str, Any]] = {
        "prepare": {
            "prepare_cluster_name": cluster.name,
            "prepare_container": found.container or "",
            # Its own name and the control planes' names: enough for kubeadm and the
            # kubelet, and adding a worker then leaves every other host's file alone.
            "prepare_hosts_entries": [
                {"ip": h.ip, "name": h.name}
                for h in cluster.hosts
                if h is host or h.has("control-plane")
            ],
        }
    }
    if host.has("control-plane") or host.has("worker"):
        roles["containerd"] = {}
        roles["kube_packages"] = _package_vars(cluster)
    return roles


def _package_vars(cluster: Cluster) -> dict[str, Any]:
    packages = cluster.packages
    release: KubeVersion = cluster.release
    url = packages.url or UPSTREAM_REPOSITORY.format(minor=release.minor_str)
    key_url = packages.key_url
    if packages.source == "upstream" and key_url is None:
        key_url = url + "Release.key"
    return {
        "kube_packages_version": str(release),
        "kube_packages_source": packages.source,
        "kube_packages_url": url,
        "kube_packages_key_url": key_url or "",
        "kube_packages_directory": str(packages.path or ""),
    }


def drift(cluster: Cluster, host: Host, found: HostFacts, role: str, wanted: str) -> str | None:
    """Why `role` must run on `host`, or None when it is converged."""
    stamp = found.stamp(role)
    if stamp is None:
        return "not set up yet"
    if stamp != wanted:
        return "settings or roles changed"
    if role == "prepare":
        if found.data["memory"]["swap_mib"] and not found.container:
            return "swap is on"
        for name, value in DESIRED_SYSCTLS.items():
            current = found.sysctl(name)
            if current is not None and current != value:
                return f"{name} is {current}"
    elif role == "containerd":
        if found.package("containerd") is None:
            return "containerd is not installed"
        if not (found.active("containerd") and found.enabled("containerd")):
            return "containerd is not running and enabled"
    elif role == "kube_packages":
        version = str(cluster.release)
        for name in ("kubeadm", "kubelet", "kubectl"):
            package = found.package(name)
            if package is None or not package.version.startswith(f"{version}-"):
                have = package.version if package else "missing"
                return f"{name} is {have}, not {version}"
            if not package.held:
                return f"{name} is not held"
        if not found.enabled("kubelet"):
            return "the kubelet is not enabled"
    return None


class NodeSetup(Step):
    title = "node setup (Ansible)"

    def plan(self, ctx: Context) -> list[Action]:
        roles: list[tuple[str, tuple[str, ...]]] = []
        reasons: list[tuple[str, str]] = []
        host_vars: list[tuple[str, str]] = []
        for host in ctx.cluster.hosts:
            found = ctx.host_facts(host)
            wanted = role_vars(ctx.cluster, host, found)
            stamps = {role: fingerprint(role, values) for role, values in wanted.items()}
            drifted = []
            for role in wanted:
                why = drift(ctx.cluster, host, found, role, stamps[role])
                if why:
                    drifted.append(role)
                    reasons.append((host.name, f"{role}: {why}"))
            if drifted:
                roles.append((host.name, tuple(drifted)))
                merged: dict[str, Any] = {"k8sboot_converge": drifted, "k8sboot_stamps": stamps}
                for role in drifted:
                    merged |= wanted[role]
                merged["prepare_swap"] = bool(found.data["memory"]["swap_mib"])
                host_vars.append((host.name, json.dumps(merged, sort_keys=True)))
        if not roles:
            return []
        return [Converge(tuple(roles), tuple(reasons), tuple(host_vars))]
