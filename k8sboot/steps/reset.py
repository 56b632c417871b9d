"""Undo `up`: kubeadm reset on every node, and the leftovers kubeadm leaves behind."""

from __future__ import annotations

from k8sboot.actions import Action, RunCommands
from k8sboot.steps.base import Context, Step

# kubeadm reset leaves CNI configuration, CNI interfaces, iptables rules and IPVS tables
# behind; a later init on the same machine trips over them.
CLEANUP = " ; ".join(
    [
        "if command -v kubeadm >/dev/null; then kubeadm reset -f; fi",
        "rm -rf /etc/cni/net.d/* /var/lib/cni /run/flannel /etc/k8sboot",
        "rm -f /var/lib/k8sboot/stamps/cni",
        "for link in cni0 flannel.1 vxlan.calico kube-ipvs0 tunl0; do "
        "ip link delete $link 2>/dev/null || true; done",
        "for tool in iptables ip6tables; do if command -v $tool-save >/dev/null; then "
        "$tool-save | grep -v -E 'KUBE-|FLANNEL|cali-|CNI-' | $tool-restore; fi; done",
        "if command -v ipvsadm >/dev/null; then ipvsadm --clear; fi",
        "true",
    ]
)
PURGE = (
    "apt-get purge -y --allow-change-held-packages kubeadm kubelet kubectl "
    "&& rm -f /var/lib/k8sboot/stamps/kube_packages /etc/apt/sources.list.d/kubernetes.sources"
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
            leftovers = found.kubeadm_configured or found.data["manifests"] or found.stamp("cni")
            commands = []
            if leftovers:
                commands.append((host.name, CLEANUP))
            if self.purge_packages and found.package("kubeadm"):
                commands.append((host.name, PURGE))
            if commands:
                actions.append(RunCommands(tuple(commands), "reset"))
        return actions
