"""k8sboot's own state on the hosts it manages (kubeadm's layout is in kubeadm_node; the
operator's side is state.StateDir).

Shared core: imports nothing of k8sboot.
"""

VAR_LIB_DIR = "/var/lib/k8sboot"
# One file per converged Ansible role (and the CNI): the fingerprint of what was applied.
STAMPS_DIR = f"{VAR_LIB_DIR}/stamps"
ETCD_SNAPSHOT_DIR = f"{VAR_LIB_DIR}/etcd-snapshots"  # scheduled snapshots
ETCD_BACKUP_DIR = f"{VAR_LIB_DIR}/etcd-backup"  # a backup's snapshot while it is fetched
ETCD_VERIFY_DIR = f"{VAR_LIB_DIR}/etcd-verify"  # test restores of a backup
ETCD_RESTORE_STAGE_DIR = f"{VAR_LIB_DIR}/etcd-restore"
# Where a restore keeps what it replaced on each host, outside every directory kubeadm
# manages (kubeadm reset empties /var/lib/etcd and /etc/kubernetes): never deleted by
# k8sboot.
ETCD_KEPT_DIR = f"{VAR_LIB_DIR}/etcd-before-restore"

CONFIG_DIR = "/etc/k8sboot"  # the files k8sboot renders for kubeadm and the CNI
PAUSED_MANIFESTS_DIR = f"{CONFIG_DIR}/paused-manifests"  # static pods stopped for a renewal
