"""`k8sboot upgrade`."""

from __future__ import annotations

import click

from k8sboot import workflows
from k8sboot.cli import options
from k8sboot.cli.common import App, RunsWorkflow, pass_app
from k8sboot.cluster import upgrade
from k8sboot.nodes.drain import DrainOptions
from k8sboot.session import looking


@click.command(
    "upgrade", cls=RunsWorkflow, short_help="Upgrade Kubernetes to the cluster file's version."
)
@click.option(
    "--max-unavailable",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Workers upgraded (drained) at the same time.",
)
@click.option(
    "--walk",
    is_flag=True,
    help="When the cluster file's version is several minors ahead: go through each minor in "
    "turn (its newest release in the repository), each its own upgrade with checks and backup.",
)
@options.drain_timeout
@options.emptydir
@options.dry_run
@options.wait_timeout
@options.shared()
@pass_app
def command(
    app: App,
    max_unavailable: int,
    walk: bool,
    timeout: float,
    delete_emptydir_data: bool,
    dry_run: bool,
    wait_timeout: float,
) -> None:
    """Upgrade the running cluster to the cluster file's kubernetes.version, the kubeadm
    way: checks first (versions, health, packages, PodDisruptionBudgets), an etcd backup
    (the way back), then each control plane in turn (`kubeadm upgrade apply` on the first,
    `kubeadm upgrade node` on the others, etcd leadership and the virtual IP moved off it
    first), then the workers; each node drained, its kubelet upgraded and restarted,
    uncordoned. One minor at a time; never a downgrade. Run it again after an interruption:
    it goes on where it stopped.

    \b
    Examples:
      k8sboot upgrade --dry-run          # what would run on each node
      k8sboot upgrade --max-unavailable 2
      k8sboot upgrade --walk             # 1.30 to 1.32 through the newest 1.31
    """
    drain = DrainOptions(timeout, delete_emptydir_data, force=False)
    cluster = app.cluster()
    path = [str(cluster.release)]
    if walk:
        with looking(cluster, "upgrade-walk") as ctx:
            path = upgrade.walk(ctx)
        if len(path) > 1:
            click.echo(f"upgrade path: {' -> '.join(path)}", err=True)
        if dry_run and len(path) > 1:  # each hop plans from what the one before left
            path = path[:1]
            click.echo("--dry-run: the first upgrade of the path only", err=True)
    for version in path:
        app.run(
            workflows.upgrade(drain, max_unavailable),
            upgrade.at_version(cluster, version),
            dry_run=dry_run,
            wait_timeout=wait_timeout,
        )
