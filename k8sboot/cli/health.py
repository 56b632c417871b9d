"""`k8sboot health`: one verdict per check, in parallel across hosts; read-only."""

from __future__ import annotations

import click

from k8sboot.certs.expiry import WARN_DAYS
from k8sboot.cli import options
from k8sboot.cli.common import App, echo_json, pass_app
from k8sboot.errors import EXIT_FAILURE
from k8sboot.health.observe import observe
from k8sboot.health.table import document, print_table
from k8sboot.health.verdicts import healthy, judge
from k8sboot.nodes import removed
from k8sboot.session import read_only
from k8sboot.spec import Cluster
from k8sboot.state import StateDir


def load_present(app: App) -> tuple[Cluster, list[str], frozenset[str]]:
    """The cluster to look at: stopped Vagrant machines included (they are reported), hosts
    taken out with `node remove` left out (with a note each, and their names)."""
    cluster = app.cluster(allow_stopped=True)
    assert cluster.state_dir is not None
    state = StateDir(cluster.state_dir)
    gone = frozenset(removed.load(state))
    present, notes = removed.exclude(cluster, state, forget=False)
    return present, notes, gone


warn_days = click.option(
    "--warn-days",
    type=click.FloatRange(min=0),
    default=WARN_DAYS,
    show_default=True,
    help="Warn about certificates that expire within this many days.",
)


@click.command("health", short_help="Check the whole cluster; change nothing.")
@warn_days
@options.shared()
@pass_app
@click.pass_context
def command(ctx: click.Context, app: App, warn_days: float) -> None:
    """Check the cluster, all hosts at once: SSH and host keys; containerd and kubelet;
    /readyz of every API server and through the endpoint; etcd health, leader, DB size
    against its quota, alarms; Node conditions and kubelet version skew; certificate
    expiry; clock skew. Changes nothing, takes no lock. Exit 0 healthy, 1 unhealthy.

    \b
    Examples:
      k8sboot health
      k8sboot health --warn-days 60 -o json
    """
    cluster, left_out, gone = load_present(app)
    with read_only(cluster, "health") as hosts:
        seen = observe(cluster, hosts)
    verdicts = judge(cluster, seen, warn_days, gone)
    if app.json:
        echo_json(
            document(verdicts, cluster=cluster.name, seconds=round(seen.seconds, 2), notes=left_out)
        )
    else:
        for note in left_out:
            click.echo(f"note: {note}", err=True)
        print_table(verdicts, f" ({seen.seconds:.1f}s)")
    if not healthy(verdicts):
        ctx.exit(EXIT_FAILURE)
