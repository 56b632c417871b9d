"""The flat list of steps behind each command."""

from __future__ import annotations

from k8sboot.etcd.catalogue import Manifest, Store
from k8sboot.etcd.install import ControlPlaneEtcdTools, ExternalEtcdRelease
from k8sboot.etcd.restore_record import refuse_during_restore
from k8sboot.pipeline import Workflow
from k8sboot.steps.certs import RenewAll
from k8sboot.steps.cluster import Cni, Kubeconfig, WaitReady
from k8sboot.steps.etcd_backup import EtcdBackup, EtcdPull, EtcdSchedule, EtcdVerify
from k8sboot.steps.etcd_external import EtcdCertificates, EtcdMembers, ResetEtcd
from k8sboot.steps.etcd_maintenance import EtcdDefrag, EtcdDisarm
from k8sboot.steps.etcd_restore import EtcdRestore, EtcdRollback
from k8sboot.steps.files import ContainerdConfig, KubeVip
from k8sboot.steps.kubeadm import InitControlPlane, JoinControlPlanes, JoinWorkers
from k8sboot.steps.node_setup import NodeSetup, Services
from k8sboot.steps.nodes import (
    CheckRemoval,
    CordonNode,
    DeleteNodeObject,
    DrainNode,
    DrainOptions,
    RemoveFromEtcd,
    ResetRemovedHost,
)
from k8sboot.steps.reset import ResetNodes


def up(only: str | None = None) -> Workflow:
    """Everything, or (`node add`) the setup of one host and what joining it needs."""
    return Workflow(
        "up" if only is None else "node-add",
        [
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
        leaves_out_removed=True,
        guards=(refuse_during_restore,),
    )


def reset(purge_packages: bool) -> Workflow:
    return Workflow(
        "reset",
        [ResetNodes(purge_packages), ResetEtcd()],
        preflight=False,
        guards=(refuse_during_restore,),
    )


def _maintenance(name: str, steps: list) -> Workflow:
    # Maintenance acts through one control plane and on one node: other hosts may be down.
    return Workflow(name, steps, preflight=False, needs_all_hosts=False)


def node_cordon(node: str, unschedulable: bool) -> Workflow:
    verb = "cordon" if unschedulable else "uncordon"
    return _maintenance(f"node-{verb}", [CordonNode(node, unschedulable)])


def node_drain(node: str, options: DrainOptions) -> Workflow:
    return _maintenance("node-drain", [DrainNode(node, options)])


def node_remove(node: str, options: DrainOptions) -> Workflow:
    return Workflow(
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


def certs_renew() -> Workflow:
    return Workflow(
        "certs-renew", [RenewAll()], preflight=False, needs_all_hosts=False, leaves_out_removed=True
    )


def _etcd(name: str, steps: list) -> Workflow:
    # etcd commands act through the members that answer: one may be down.
    return Workflow(name, steps, preflight=False, needs_all_hosts=False)


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
