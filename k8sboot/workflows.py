"""The flat list of steps behind each command."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from k8sboot.certs.renew import RenewAll
from k8sboot.cluster.cni import Cni, WaitReady
from k8sboot.cluster.containerd import ContainerdConfig
from k8sboot.cluster.kube_vip import KubeVip
from k8sboot.cluster.kubeadm import InitControlPlane, JoinControlPlanes, JoinWorkers
from k8sboot.cluster.kubeconfig import Kubeconfig
from k8sboot.cluster.node_setup import NodeSetup, Services
from k8sboot.cluster.reset import ResetNodes
from k8sboot.cluster.upgrade import (
    FinishUpgrade,
    KeepVersion,
    PackagesAfterUpgrade,
    RemoveKubeadmEtcdCopies,
    UpgradeBackup,
    UpgradeChecks,
    UpgradeControlPlanes,
    UpgradeExternalEtcd,
    UpgradeKubeadm,
    UpgradeWorkers,
)
from k8sboot.etcd import topology
from k8sboot.etcd.backup import EtcdBackup
from k8sboot.etcd.catalogue import Manifest, Store
from k8sboot.etcd.external import EtcdCertificates, EtcdMembers, ResetEtcd
from k8sboot.etcd.install import ControlPlaneEtcdTools, ExternalEtcdRelease
from k8sboot.etcd.maintenance import EtcdDefrag, EtcdDisarm
from k8sboot.etcd.restore import EtcdRestore, EtcdRollback
from k8sboot.etcd.restore_record import refuse_during_restore
from k8sboot.etcd.scheduled import EtcdPull, EtcdSchedule
from k8sboot.etcd.verify import EtcdVerify
from k8sboot.nodes import removed
from k8sboot.nodes.drain import CordonNode, DrainNode, DrainOptions
from k8sboot.nodes.remove import CheckRemoval, DeleteNodeObject, RemoveFromEtcd, ResetRemovedHost
from k8sboot.pipeline import Workflow


def _workflow(name: str, steps: list, **options: Any) -> Workflow:
    """Every workflow says, when hosts cannot be reached, which of them etcd needs."""
    return Workflow(name, steps, explain_unreachable=topology.lost_hosts, **options)


def up(only: str | None = None) -> Workflow:
    """Everything, or (`node add`) the setup of one host and what joining it needs."""
    return _workflow(
        "up" if only is None else "node-add",
        [
            KeepVersion(),
            NodeSetup(only),
            Services(only),
            ExternalEtcdRelease(),
            EtcdCertificates(),
            EtcdMembers(),
            ContainerdConfig(only),
            InitControlPlane(),
            JoinControlPlanes(),
            JoinWorkers(),
            ControlPlaneEtcdTools(),
            KubeVip(),
            Cni(),
            WaitReady(),
            Kubeconfig(),
        ],
        leaves_out=removed.exclude,
        guards=(refuse_during_restore,),
    )


def plan() -> Workflow:
    """`up`'s steps to show, not run: named plan in the header, the run log and the events."""
    return replace(up(), name="plan")


def reset(purge_packages: bool) -> Workflow:
    return _workflow(
        "reset",
        [ResetNodes(purge_packages), ResetEtcd()],
        preflight=False,
        guards=(refuse_during_restore,),
    )


def _maintenance(name: str, steps: list) -> Workflow:
    # Maintenance acts through one control plane and on one node: other hosts may be down.
    return _workflow(name, steps, preflight=False, needs_all_hosts=False)


def node_cordon(node: str, unschedulable: bool) -> Workflow:
    verb = "cordon" if unschedulable else "uncordon"
    return _maintenance(f"node-{verb}", [CordonNode(node, unschedulable)])


def node_drain(node: str, options: DrainOptions) -> Workflow:
    return _maintenance("node-drain", [DrainNode(node, options)])


def node_remove(node: str, options: DrainOptions) -> Workflow:
    return _workflow(
        "node-remove",
        [
            CheckRemoval(node),
            DrainNode(node, options, for_removal=True),
            RemoveFromEtcd(node),
            ResetRemovedHost(node),
            DeleteNodeObject(node),
        ],
        preflight=False,
        needs_all_hosts=False,
        guards=(refuse_during_restore,),
    )


def upgrade(drain: DrainOptions, max_unavailable: int = 1) -> Workflow:
    """To the cluster file's Kubernetes version, the kubeadm way (cluster/upgrade.py)."""
    return _workflow(
        "upgrade",
        [
            UpgradeChecks(drain),
            UpgradeBackup(),
            UpgradeExternalEtcd(),
            UpgradeKubeadm(),
            UpgradeControlPlanes(drain),
            UpgradeWorkers(drain, max_unavailable),
            KubeVip(),
            Kubeconfig(),  # kubeadm upgrade renews admin.conf's certificate
            RemoveKubeadmEtcdCopies(),
            PackagesAfterUpgrade(),
            FinishUpgrade(),
        ],
        preflight=False,
        leaves_out=removed.exclude,
        guards=(refuse_during_restore,),
    )


def certs_renew() -> Workflow:
    return _workflow(
        "certs-renew",
        [RenewAll()],
        preflight=False,
        needs_all_hosts=False,
        leaves_out=removed.exclude,
    )


def _etcd(name: str, steps: list) -> Workflow:
    # etcd commands act through the members that answer: one may be down.
    return _workflow(name, steps, preflight=False, needs_all_hosts=False)


def etcd_backup(member: str | None) -> Workflow:
    return _etcd("etcd-backup", [EtcdBackup(member)])


def etcd_verify(store: Store, manifest: Manifest) -> Workflow:
    return _etcd("etcd-verify", [EtcdVerify(store, manifest)])


def etcd_schedule() -> Workflow:
    return _etcd("etcd-schedule", [EtcdSchedule()])


def etcd_pull() -> Workflow:
    return _etcd("etcd-pull", [EtcdPull()])


def etcd_restore(
    store: Store, manifest: Manifest, onto: tuple[str, ...], without_revision_bump: bool = False
) -> Workflow:
    return _etcd("etcd-restore", [EtcdRestore(store, manifest, onto, without_revision_bump)])


def etcd_rollback(tag: str) -> Workflow:
    return _etcd("etcd-restore-rollback", [EtcdRollback(tag)])


def etcd_defrag(pause: float) -> Workflow:
    return _etcd("etcd-defrag", [EtcdDefrag(pause)])


def etcd_disarm() -> Workflow:
    return _etcd("etcd-alarms", [EtcdDisarm()])
