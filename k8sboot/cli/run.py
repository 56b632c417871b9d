"""Commands that act on the machines: up, plan, reset, down."""

from __future__ import annotations

from pathlib import Path

import click

from k8sboot import pipeline, workflows
from k8sboot.cli import options
from k8sboot.cli.common import load, reporter
from k8sboot.errors import UserError
from k8sboot.vagrant import find_root, run_vagrant

EXIT_PENDING = 2


@click.command("up")
@options.spec_file
@options.vagrant
@options.dry_run
@options.wait_timeout
@options.output("text", "json")
@options.common
def up(
    spec_path: Path,
    vagrant: bool,
    dry_run: bool,
    wait_timeout: float,
    output: str,
    verbose: int,
    **_: object,
) -> None:
    """Bring the cluster to the spec: prepare hosts, containerd, packages, kubeadm init and
    joins, CNI, kubeconfig. Re-running on a converged cluster changes nothing.

    With --vagrant, the hosts are the Vagrant machines, brought up first when any is not
    running.
    """
    cluster = load(spec_path, vagrant, vagrant_up=not dry_run).cluster
    pipeline.run(
        workflows.up(),
        cluster,
        reporter(output, verbose),
        dry_run=dry_run,
        wait_timeout=wait_timeout,
    )


@click.command("plan")
@options.spec_file
@options.vagrant
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when converged, 2 when changes are pending.",
)
@options.output("text", "json")
@options.common
@click.pass_context
def plan(
    ctx: click.Context,
    spec_path: Path,
    vagrant: bool,
    detailed_exitcode: bool,
    output: str,
    verbose: int,
    **_: object,
) -> None:
    """Show, per step and host, what `up` would change (files as diffs, packages,
    services, kubeadm operations). Changes nothing."""
    cluster = load(spec_path, vagrant).cluster
    result = pipeline.run(workflows.up(), cluster, reporter(output, verbose), dry_run=True)
    if detailed_exitcode and result.pending:
        ctx.exit(EXIT_PENDING)


@click.command("reset")
@options.spec_file
@options.vagrant
@click.option("--purge-packages", is_flag=True, help="Also remove kubeadm, kubelet, kubectl.")
@click.option("-y", "--yes", is_flag=True, help="Do it: reset destroys the cluster.")
@options.output("text", "json")
@options.common
def reset(
    spec_path: Path,
    vagrant: bool,
    purge_packages: bool,
    yes: bool,
    output: str,
    verbose: int,
    **_: object,
) -> None:
    """Destroy the cluster: kubeadm reset on every node, then remove the CNI, iptables and
    IPVS state kubeadm leaves behind. The machines stay."""
    if not yes:
        raise UserError("reset destroys the cluster and its data; pass --yes to confirm")
    cluster = load(spec_path, vagrant).cluster
    pipeline.run(workflows.reset(purge_packages), cluster, reporter(output, verbose))
    assert cluster.state_dir is not None
    for name in ("kubeconfig", "kubeconfig.source"):
        (cluster.state_dir / name).unlink(missing_ok=True)


@click.command("down")
@options.spec_file
@click.option("--vagrant", is_flag=True, required=True, help="Destroy the Vagrant machines.")
@click.option("-y", "--yes", is_flag=True, help="Do it: the machines and their data go.")
@options.output("text", "json")
@options.common
def down(spec_path: Path, vagrant: bool, yes: bool, output: str, verbose: int, **_: object) -> None:
    """Reset the cluster, then destroy the Vagrant machines (`vagrant destroy -f`)."""
    if not yes:
        raise UserError("down destroys the machines and their data; pass --yes to confirm")
    root = find_root()
    try:
        cluster = load(spec_path, vagrant=True).cluster
    except UserError as error:  # machines already gone or stopped: nothing to reset
        click.echo(f"skipping reset: {error}", err=True)
        cluster = None
    if cluster is not None:
        pipeline.run(workflows.reset(False), cluster, reporter(output, verbose))
    run_vagrant(["destroy", "-f"], root, timeout=1800)
    if cluster is not None and cluster.state_dir is not None:
        # The machines and their host keys are gone; new ones get pinned afresh.
        for name in ("known_hosts", "kubeconfig", "kubeconfig.source"):
            (cluster.state_dir / name).unlink(missing_ok=True)
