"""Undo `up`: kubeadm reset on every node, and the leftovers kubeadm leaves behind."""

from __future__ import annotations

from k8sboot.actions import Action, RunCommands
from k8sboot.facts import HostFacts
from k8sboot.host_state import CONFIG_DIR, STAMPS_DIR
from k8sboot.spec import Cluster
from k8sboot.step import Context, Step

# kubeadm reset leaves CNI configuration, CNI interfaces, iptables rules and IPVS tables
# behind; a later init on the same machine trips over them.
CLEANUP = " ; ".join(
    [
        "if command -v kubeadm >/dev/null; then kubeadm reset -f; fi",
        f"rm -rf /etc/cni/net.d/* /var/lib/cni /run/flannel {CONFIG_DIR}",
        f"rm -f {STAMPS_DIR}/cni",
        "for link in cni0 flannel.1 vxlan.calico kube-ipvs0 tunl0; do "
        "ip link delete $link 2>/dev/null || true; done",
        "for tool in iptables ip6tables; do if command -v $tool-save >/dev/null; then "
        "$tool-save | grep -v -E 'KUBE-|FLANNEL|cali-|CNI-' | $tool-restore; fi; done",
        "if command -v ipvsadm >/dev/null; then ipvsadm --clear; fi",
        "true",
    ]
)


def virtual_ip(cluster: Cluster) -> str | None:
    endpoint = cluster.control_plane_endpoint
    return endpoint.address if endpoint.type == "kube-vip" else None


def leftovers(cluster: Cluster, found: HostFacts) -> bool:
    """What `up` left on a host that reset removes."""
    vip = virtual_ip(cluster)
    return bool(
        found.kubeadm_configured
        or found.manifests
        or found.stamp("cni")
        or (vip and found.interface_of(vip))
    )


def cleanup(cluster: Cluster) -> str:
    """kubeadm reset and its leftovers; with kube-vip also the virtual IP, which stays on
    the interface when kube-vip is killed before it lets go of it (kubeadm never removes it)."""
    vip = virtual_ip(cluster)
    if vip is None:
        return CLEANUP
    return (
        f"{CLEANUP} ; ip -o addr show to {vip} | while read -r _ dev _ cidr _; do "
        'ip addr del "$cidr" dev "$dev"; done'
    )


PURGE = (
    "apt-get purge -y --allow-change-held-packages kubeadm kubelet kubectl "
    f"&& rm -f {STAMPS_DIR}/kube_packages /etc/apt/sources.list.d/kubernetes.sources"
)


class ResetNodes(Step):
    title = "kubeadm reset and cleanup"

    def __init__(self, purge_packages: bool = False):
        self.purge_packages = purge_packages

    def plan(self, ctx: Context) -> list[Action]:
        cluster = ctx.cluster
        first = cluster.first_control_plane
        # Workers first, the first control plane last: etcd members leave one at a time.
        order = [h for h in cluster.kube_nodes if not h.has("control-plane")]
        order += [h for h in cluster.control_planes if h is not first] + [first]
        actions: list[Action] = []
        for host in order:
            if host.name not in ctx.facts.hosts:
                continue
            found = ctx.host_facts(host)
            commands = []
            if leftovers(cluster, found):
                commands.append((host.name, cleanup(cluster)))
            if self.purge_packages and found.package("kubeadm"):
                commands.append((host.name, PURGE))
            if commands:
                actions.append(RunCommands(tuple(commands), "reset"))
        return actions
