from __future__ import annotations

import click

from k8sboot.cli import options
from k8sboot.cli.common import App, echo_json, pass_app, read_spec
from k8sboot.errors import EXIT_USAGE, SpecError
from k8sboot.spec import check_local_files
from k8sboot.vagrant import read_environment


@click.command("validate", short_help="Check a cluster file; list every problem.")
@options.shared()
@pass_app
@click.pass_context
def command(ctx: click.Context, app: App) -> None:
    """Check a cluster file and list every problem in it, one per line.

    \b
    Examples:
      k8sboot validate
      k8sboot validate -f prod.yaml -o json
    """
    spec_path = app.spec_path
    try:
        loaded = read_spec(spec_path, read_environment() if app.vagrant else None)
        missing = check_local_files(loaded.cluster)
        if missing:
            raise SpecError([str(f) for f in missing])
    except SpecError as exc:
        if app.json:
            echo_json(
                {
                    "ok": False,
                    "file": str(spec_path),
                    "valid": False,
                    "errors": exc.problems,
                    "warnings": [],
                }
            )
        else:
            for problem in exc.problems:
                click.echo(f"{spec_path}: {problem}", err=True)
        ctx.exit(EXIT_USAGE)
    cluster = loaded.cluster
    warnings = [str(w) for w in loaded.warnings]
    if app.json:
        echo_json(
            {"ok": True, "file": str(spec_path), "valid": True, "errors": [], "warnings": warnings}
        )
        return
    for warning in warnings:
        click.echo(f"warning: {spec_path}: {warning}", err=True)
    roles = {
        "control-plane": len(cluster.control_planes),
        "worker": len(cluster.with_role("worker")),
        "etcd": len(cluster.with_role("etcd")),
    }
    counts = ", ".join(f"{role} {n}" for role, n in roles.items() if n)
    click.echo(
        f"{spec_path}: valid: cluster {cluster.name}, Kubernetes {cluster.release} "
        f"(kubeadm {cluster.release.kubeadm_api}), {_hosts(len(cluster.hosts))} ({counts}), "
        f"{cluster.etcd.topology} etcd, CNI {cluster.networking.cni}"
    )


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"
