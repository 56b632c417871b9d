"""`k8sboot kubeconfig`: the admin kubeconfig, or a client-certificate one for a user."""

from __future__ import annotations

from pathlib import Path

import click

from k8sboot.cli import options
from k8sboot.cli.common import App, pass_app
from k8sboot.cli.health import load_present
from k8sboot.cluster import kubeconfig
from k8sboot.errors import UserError
from k8sboot.session import read_only, unlocked


@click.command("kubeconfig", short_help="The admin kubeconfig, or one for a user.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write it to this file (0600) instead of stdout; a file already there is never "
    "replaced (unless it holds the very same kubeconfig).",
)
@click.option(
    "--user",
    help="A kubeconfig for this user instead: a client certificate with this name (CN), "
    "signed by the cluster CA on a control plane (`kubeadm kubeconfig user`).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    help="With --user: a group (O) of the certificate; repeat for more.",
)
@click.option(
    "--ttl",
    type=options.Duration(),
    help="With --user: how long the certificate is valid (90s, 10m, 720h) [default: "
    "kubeadm's, 8760h].",
)
@options.shared(output=())
@pass_app
def command(
    app: App, out: Path | None, user: str | None, groups: tuple[str, ...], ttl: float | None
) -> None:
    """Print the cluster's admin kubeconfig. It comes from the first control plane that
    has it, with the cluster's endpoint as its server. With --user: a kubeconfig for that
    user instead, whose certificate the cluster CA signs on a control plane (the CA key
    stays there); give the user rights with RBAC (a RoleBinding or ClusterRoleBinding for
    the user or a group). Either holds a private key: keep it as safe as a password.

    \b
    Examples:
      k8sboot kubeconfig --out ~/.kube/lab.conf
      kubectl --kubeconfig <(k8sboot kubeconfig) get nodes
      k8sboot kubeconfig --user alice --group dev --ttl 720h --out alice.conf
    """
    if user is None and (groups or ttl is not None):
        raise UserError("--group and --ttl go with --user NAME")
    if user is not None and not user.strip():
        raise UserError("--user: a name is needed (the certificate's CN)")
    for group in groups:
        if "," in group:
            raise UserError(
                f"--group {group!r}: kubeadm reads a comma as between two groups; give "
                "each group its own --group"
            )
    cluster, _, _ = load_present(app)
    if user is None:
        with read_only(cluster, "kubeconfig") as hosts:
            text = kubeconfig.admin_kubeconfig(cluster, hosts)
    else:
        # `kubeadm kubeconfig user` writes nothing on the host, but it is a command that
        # signs with the CA's key, not a question: it runs through the full transport.
        with unlocked(cluster, "kubeconfig") as transport:
            issued = kubeconfig.user_kubeconfig(cluster, transport, user, groups, ttl)
        for warning in issued.warnings:
            click.echo(f"warning: {warning}", err=True)
        text = issued.text
    if out is None:
        click.echo(text, nl=False)
    elif kubeconfig.save(out, text):
        click.echo(f"wrote {out}")
    else:
        click.echo(f"{out} is up to date")
