"""Kubernetes versions change only through `k8sboot upgrade`, the kubeadm way, node by
node. `up` brings new hosts and new clusters to the cluster file's version and refuses to
change the version of a running one: installing other packages everywhere at once, with no
`kubeadm upgrade`, would break the version-skew rules of a live cluster."""

from __future__ import annotations

from k8sboot.actions import Action
from k8sboot.errors import UnsafeError
from k8sboot.facts import HostFacts
from k8sboot.step import Context, Step

KUBE_NODE_PACKAGES = ("kubeadm", "kubelet")


def installed(found: HostFacts, name: str) -> str | None:
    """The Kubernetes version of an installed package ('1.33.1' of '1.33.1-1.1')."""
    package = found.package(name)
    return package.version.split("-", 1)[0] if package else None


def running_elsewhere(ctx: Context) -> dict[str, str]:
    """Host -> the version it runs, for every host kubeadm configured whose kubeadm or
    kubelet is not the cluster file's version."""
    wanted = str(ctx.cluster.release)
    found_at = {}
    for host in ctx.cluster.kube_nodes:
        if host.name not in ctx.facts.hosts or not ctx.host_facts(host).kubeadm_configured:
            continue
        found = ctx.host_facts(host)
        versions = {installed(found, name) for name in KUBE_NODE_PACKAGES} - {None}
        if versions and versions != {wanted}:  # a missing package is repaired by node setup
            # What the node runs is its kubelet; a kubeadm ahead of it is an upgrade begun.
            found_at[host.name] = installed(found, "kubelet") or installed(found, "kubeadm") or "?"
    return found_at


class KeepVersion(Step):
    """First in `up`: a running cluster at another version than the cluster file's is
    refused before anything changes (exit 3), and `plan` says the same."""

    title = "Kubernetes version"

    def plan(self, ctx: Context) -> list[Action]:
        elsewhere = running_elsewhere(ctx)
        if elsewhere:
            by_version: dict[str, list[str]] = {}
            for host, version in elsewhere.items():
                by_version.setdefault(version, []).append(host)
            running = "; ".join(
                f"{', '.join(hosts)} {'run' if len(hosts) > 1 else 'runs'} {version}"
                for version, hosts in sorted(by_version.items())
            )
            raise UnsafeError(
                f"the cluster file says Kubernetes {ctx.cluster.release}, but {running}: "
                "`up` never changes the version of a running cluster; run `k8sboot upgrade`"
            )
        return []
