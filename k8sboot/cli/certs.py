"""`k8sboot certs`: check the expiry of kubeadm's certificates; renew them."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from k8sboot import workflows
from k8sboot.certs.expiry import Certificate, check_expiration
from k8sboot.cli import options
from k8sboot.cli.common import App, RunsWorkflow, echo_json, pass_app
from k8sboot.cli.health import load_present, warn_days
from k8sboot.errors import EXIT_FAILURE
from k8sboot.health.table import print_table
from k8sboot.health.verdicts import Verdict
from k8sboot.session import read_only


@click.group("certs", short_help="Expiry and renewal of kubeadm's certificates.")
def group() -> None:
    """kubeadm-managed certificates on the control planes: expiry and renewal.

    \b
    Examples:
      k8sboot certs check
      k8sboot certs renew
    """


@group.command("check", short_help="The expiry of kubeadm's certificates.")
@warn_days
@options.shared()
@pass_app
@click.pass_context
def check(ctx: click.Context, app: App, warn_days: float) -> None:
    """The expiry of every kubeadm-managed certificate on every control plane (`kubeadm
    certs check-expiration`). Exit 1 when one has expired, is missing, or expires within
    --warn-days.

    \b
    Examples:
      k8sboot certs check
      k8sboot certs check --warn-days 60 -o json
    """
    cluster, _, _ = load_present(app)
    names = [h.name for h in cluster.control_planes]
    with read_only(cluster, "certs-check") as hosts:
        answers = hosts.each(names, check_expiration)
    now = datetime.now(UTC)
    rows: list[tuple[Certificate, str, str]] = []
    errors: dict[str, str] = {}
    for name in names:
        answer = answers[name]
        if isinstance(answer, BaseException):
            errors[name] = str(answer)
            continue
        rows += [(c, *c.verdict(now, warn_days)) for c in answer]
    good = not errors and all(status == "ok" for _, status, _ in rows)
    if app.json:
        echo_json(
            {
                "ok": good,
                "warn_days": warn_days,
                "certificates": [
                    {
                        "host": c.host,
                        "name": c.name,
                        "authority": c.authority or None,
                        "expires": c.expires.isoformat() if c.expires else None,
                        "days_left": round(d, 1) if (d := c.days_left(now)) is not None else None,
                        "externally_managed": c.external,
                        "status": status,
                        "detail": detail,
                    }
                    for c, status, detail in rows
                ],
                "errors": errors,
            }
        )
    else:
        verdicts = [
            Verdict(c.name if c.authority else f"{c.name} (CA)", c.host, status, detail)
            for c, status, detail in rows
        ] + [Verdict("certificates", host, "fail", error) for host, error in errors.items()]
        print_table(verdicts, headline="[green]ok[/]" if good else "[yellow]attention[/]")
    if not good:
        ctx.exit(EXIT_FAILURE)


@group.command(
    "renew", cls=RunsWorkflow, short_help="Renew kubeadm's certificates, one node at a time."
)
@options.dry_run
@options.shared()
@pass_app
def renew(app: App, dry_run: bool) -> None:
    """Renew kubeadm's certificates one control plane at a time: `kubeadm certs renew
    all`, then its API server, controller-manager, scheduler and etcd restarted and found
    healthy before the next. Refreshes the admin kubeconfig in the state directory.

    \b
    Examples:
      k8sboot certs renew --dry-run
      k8sboot certs renew
    """
    app.run(workflows.certs_renew(), app.cluster(allow_stopped=True), dry_run=dry_run)
