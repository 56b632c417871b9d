"""A kubeadm node as kubeadm lays it out: the paths kubeadm and the kubelet own, the API
server's port, and the kernel settings kubeadm's preflight and pod networking need.

Shared core: imports nothing of k8sboot. k8sboot's own files on hosts are in host_state.
The Ansible role `prepare` gets SYSCTLS and KERNEL_MODULES from here (cluster/node_setup.py),
so they have one source.
"""

KUBERNETES_DIR = "/etc/kubernetes"
MANIFESTS_DIR = f"{KUBERNETES_DIR}/manifests"
ETCD_MANIFEST = f"{MANIFESTS_DIR}/etcd.yaml"
APISERVER_MANIFEST = f"{MANIFESTS_DIR}/kube-apiserver.yaml"
PKI_DIR = f"{KUBERNETES_DIR}/pki"
CA_CERT = f"{PKI_DIR}/ca.crt"
CA_KEY = f"{PKI_DIR}/ca.key"  # stays on the control planes
ETCD_PKI_DIR = f"{PKI_DIR}/etcd"  # stacked etcd's CA, server and peer certificates
ETCD_CA_CERT = f"{ETCD_PKI_DIR}/ca.crt"  # external etcd's CA too, copied there
APISERVER_ETCD_CLIENT_CERT = f"{PKI_DIR}/apiserver-etcd-client.crt"
APISERVER_ETCD_CLIENT_KEY = f"{PKI_DIR}/apiserver-etcd-client.key"
ADMIN_CONF = f"{KUBERNETES_DIR}/admin.conf"
# Written by `kubeadm init` (1.29+), on the first control plane only.
SUPER_ADMIN_CONF = f"{KUBERNETES_DIR}/super-admin.conf"
KUBELET_CONF = f"{KUBERNETES_DIR}/kubelet.conf"
ETCD_DATA_DIR = "/var/lib/etcd"
ETCD_MEMBER_DIR = f"{ETCD_DATA_DIR}/member"
# Where `kubeadm upgrade` keeps the manifests it replaced and its plaintext etcd copies.
KUBEADM_TMP = f"{KUBERNETES_DIR}/tmp"

API_SERVER_PORT = 6443

KERNEL_MODULES = ("overlay", "br_netfilter")
# There only once br_netfilter is loaded (a container shows whether the host kernel has it).
BRIDGE_NF_CALL_IPTABLES = "net.bridge.bridge-nf-call-iptables"
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    BRIDGE_NF_CALL_IPTABLES: "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}
