"""Commands that act on the machines: up, plan, reset, down."""

from __future__ import annotations

import click

from k8sboot import workflows
from k8sboot.cli import options
from k8sboot.cli.common import App, RunsWorkflow, pass_app
from k8sboot.errors import EXIT_PENDING, UserError
from k8sboot.vagrant import find_root, run_vagrant


@click.command("up", cls=RunsWorkflow, short_help="Bring the cluster to the spec.")
@options.dry_run
@options.wait_timeout
@options.shared()
@pass_app
def up(app: App, dry_run: bool, wait_timeout: float) -> None:
    """Bring the cluster to the spec: prepare hosts, containerd, packages, kubeadm init and
    joins, CNI, kubeconfig. Re-running on a converged cluster changes nothing.

    With --vagrant, the hosts are the Vagrant machines, brought up first when any is not
    running.

    \b
    Examples:
      k8sboot up
      k8sboot up --dry-run               # as `plan`
      k8sboot up --vagrant --wait-timeout 20m
    """
    if not dry_run:
        app.start_machines()
    cluster = app.cluster()
    app.run(workflows.up(), cluster, dry_run=dry_run, wait_timeout=wait_timeout)


class DetailedExitcode(RunsWorkflow):
    """Bad input under --detailed-exitcode has its own exit code, also when click refuses
    the command line before it has read the option (an unknown option, say): a typo
    must not read as changes pending."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click consumes the list
        try:
            return super().parse_args(ctx, args)
        except click.UsageError:
            if "--detailed-exitcode" in given:
                ctx.ensure_object(App).detailed_exitcode = True
            raise


@click.command(
    "plan", cls=DetailedExitcode, short_help="Show what `up` would change; change nothing."
)
@options.filling(
    "detailed_exitcode",
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when converged, 2 when changes are pending, 4 on bad input.",
)
@options.shared()
@pass_app
@click.pass_context
def plan(ctx: click.Context, app: App) -> None:
    """Show, per step and host, what `up` would change (files as diffs, packages,
    services, kubeadm operations). Changes nothing.

    \b
    Examples:
      k8sboot plan
      k8sboot plan --detailed-exitcode   # 0 converged, 2 changes pending
    """
    result = app.run(workflows.plan(), app.cluster(), dry_run=True)
    if app.detailed_exitcode and result.pending:
        ctx.exit(EXIT_PENDING)


@click.command("reset", cls=RunsWorkflow, short_help="Destroy the cluster; keep the machines.")
@click.option("--purge-packages", is_flag=True, help="Also remove kubeadm, kubelet, kubectl.")
@click.option("-y", "--yes", is_flag=True, help="Do it: reset destroys the cluster.")
@options.shared()
@pass_app
def reset(app: App, purge_packages: bool, yes: bool) -> None:
    """Destroy the cluster: kubeadm reset on every node, then remove the CNI, iptables and
    IPVS state kubeadm leaves behind. The machines stay.

    \b
    Examples:
      k8sboot reset --yes
      k8sboot reset --yes --purge-packages
    """
    if not yes:
        raise UserError("reset destroys the cluster and its data; pass --yes to confirm")
    cluster = app.cluster()
    app.run(workflows.reset(purge_packages), cluster)
    assert cluster.state_dir is not None
    for name in ("kubeconfig", "kubeconfig.source"):
        (cluster.state_dir / name).unlink(missing_ok=True)


@click.command("down", cls=RunsWorkflow, short_help="Reset, then destroy the Vagrant machines.")
@options.filling(
    "vagrant", "--vagrant", is_flag=True, required=True, help="Destroy the Vagrant machines."
)
@click.option("-y", "--yes", is_flag=True, help="Do it: the machines and their data go.")
@options.shared(vagrant=False)
@pass_app
def down(app: App, yes: bool) -> None:
    """Reset the cluster, then destroy the Vagrant machines (`vagrant destroy -f`).

    \b
    Examples:
      k8sboot down --vagrant --yes
    """
    if not yes:
        raise UserError("down destroys the machines and their data; pass --yes to confirm")
    root = find_root()
    try:
        cluster = app.cluster()
    except UserError as error:  # machines already gone or stopped: nothing to reset
        click.echo(f"skipping reset: {error}", err=True)
        cluster = None
    if cluster is not None:
        app.run(workflows.reset(False), cluster)
    environment = app.environment  # read by app.cluster(), unless Vagrant could not say
    run_vagrant(["destroy", "-f"], root, timeout=1800)
    if environment is None:
        said = "destroyed the Vagrant machines"
    elif created := [m.name for m in environment.machines if m.state != "not_created"]:
        said = f"destroyed the Vagrant machines {', '.join(created)}"
    else:
        said = "no Vagrant machine to destroy: none was created"
    # Told last, after the reset's summary; with -o json as a note in the one stream.
    if app.json:
        app.events().note(f"{said} (in {root})")
    else:
        click.echo(f"{said} (in {root})")
    if cluster is not None and cluster.state_dir is not None:
        # The machines and their host keys are gone; new ones get pinned afresh.
        for name in ("known_hosts", "kubeconfig", "kubeconfig.source"):
            (cluster.state_dir / name).unlink(missing_ok=True)
