"""`k8sboot node`: cordon, uncordon, drain, remove, add."""

from __future__ import annotations

import click

from k8sboot import pipeline, workflows
from k8sboot.cli import options
from k8sboot.cli.common import App, RunsWorkflow, pass_app
from k8sboot.cli.completion import NodeName
from k8sboot.errors import UserError
from k8sboot.nodes import removed
from k8sboot.nodes.drain import DrainOptions
from k8sboot.state import StateDir

node_name = click.argument("node", type=NodeName())


@click.group("node", short_help="Cordon, uncordon, drain, remove or add a node.")
def group() -> None:
    """Node maintenance: cordon, uncordon, drain, remove, add.

    \b
    Examples:
      k8sboot node drain w1
      k8sboot node remove w2 --yes
    """


def _run(app: App, workflow: pipeline.Workflow, dry_run: bool = False) -> None:
    # A dead machine must not keep maintenance of the others (or its own removal) from
    # running: with --vagrant, stopped machines are listed too.
    app.run(workflow, app.cluster(allow_stopped=True), dry_run=dry_run)


@group.command("cordon", cls=RunsWorkflow, short_help="Mark NODE unschedulable.")
@node_name
@options.shared()
@pass_app
def cordon(app: App, node: str) -> None:
    """Mark NODE unschedulable: new pods go elsewhere; running pods stay.

    \b
    Examples:
      k8sboot node cordon w1
    """
    _run(app, workflows.node_cordon(node, True))


@group.command("uncordon", cls=RunsWorkflow, short_help="Mark NODE schedulable again.")
@node_name
@options.shared()
@pass_app
def uncordon(app: App, node: str) -> None:
    """Mark NODE schedulable again.

    \b
    Examples:
      k8sboot node uncordon w1
    """
    _run(app, workflows.node_cordon(node, False))


@group.command("drain", cls=RunsWorkflow, short_help="Cordon NODE and evict its pods.")
@node_name
@options.drain_timeout
@options.emptydir
@click.option(
    "--force",
    is_flag=True,
    help="Drain even though the pre-check found blocking pods: pods without a controller "
    "are deleted for good (kubectl drain --force). PodDisruptionBudgets are never bypassed: "
    "evictions they refuse are retried until the timeout. Not overridden: a pod under "
    "several budgets, or a budget status the eviction API refuses outright.",
)
@options.dry_run
@options.shared()
@pass_app
def drain(
    app: App, node: str, timeout: float, delete_emptydir_data: bool, force: bool, dry_run: bool
) -> None:
    """Cordon NODE and evict its pods (DaemonSet pods stay), through kubectl on a control
    plane. First lists what would block the drain (PodDisruptionBudgets allowing no
    disruption, pods without a controller, pods with emptyDir data, pods under several
    budgets) and refuses (exit 3) unless --force (or --delete-emptydir-data for emptyDir
    data; nothing for several budgets, which the eviction API refuses). A drain that times
    out names the pods left and why.

    \b
    Examples:
      k8sboot node drain w1 --dry-run
      k8sboot node drain w1 --timeout 15m --delete-emptydir-data
    """
    options_ = DrainOptions(timeout, delete_emptydir_data, force)
    _run(app, workflows.node_drain(node, options_), dry_run)


@group.command("remove", cls=RunsWorkflow, short_help="Take NODE out of the cluster and wipe it.")
@node_name
@click.option("-y", "--yes", is_flag=True, help="Do it: the node is wiped (kubeadm reset).")
@click.option(
    "--force",
    is_flag=True,
    help="Remove even when the drain is blocked or fails (etcd quorum is never overridden); "
    "pods the eviction API refuses stay until the Node object goes.",
)
@options.drain_timeout
@options.emptydir
@options.dry_run
@options.shared()
@pass_app
def remove(
    app: App,
    node: str,
    yes: bool,
    force: bool,
    timeout: float,
    delete_emptydir_data: bool,
    dry_run: bool,
) -> None:
    """Take NODE out of the cluster: drain it, remove its etcd member (control planes),
    kubeadm reset it with the CNI, iptables and IPVS leftovers (when it can be reached; a
    dead node is removed without it), delete its Node object. Refused (exit 3) for the
    last control plane, or when etcd would lose quorum. Then drop the host from the
    cluster file; until then `up` leaves it out.

    \b
    Examples:
      k8sboot node remove w2 --dry-run
      k8sboot node remove w2 --yes
    """
    if not yes and not dry_run:
        raise UserError(
            f"node remove drains {node}, takes it out of etcd and the cluster and wipes it "
            "with kubeadm reset; pass --yes to confirm"
        )
    options_ = DrainOptions(timeout, delete_emptydir_data, force)
    _run(app, workflows.node_remove(node, options_), dry_run)


@group.command(
    "add", cls=RunsWorkflow, short_help="Join NODE, also one taken out with `node remove`."
)
@node_name
@options.wait_timeout
@options.shared()
@pass_app
def add(app: App, node: str, wait_timeout: float) -> None:
    """Join NODE, a host of the cluster file: `up`, also for a host taken out earlier with
    `node remove` (which `up` otherwise leaves out).

    \b
    Examples:
      k8sboot node add w2
      k8sboot node add w3 --wait-timeout 15m
    """
    app.start_machines()
    cluster = app.cluster()
    if cluster.host(node) is None:
        names = ", ".join(h.name for h in cluster.hosts)
        raise UserError(
            f"{node} is not in the cluster file (hosts: {names}); add it under `hosts:` first"
        )
    assert cluster.state_dir is not None
    removed.forget(StateDir(cluster.state_dir), node)
    app.run(workflows.up(only=node), cluster, wait_timeout=wait_timeout)
