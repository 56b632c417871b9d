from __future__ import annotations

from pathlib import Path

import click

from k8sboot.cli import options
from k8sboot.cli.common import App, pass_app
from k8sboot.errors import UserError
from k8sboot.spec import refuse_directory, spec_from_text
from k8sboot.starter import Starter, numbered_hosts, vagrant_hosts
from k8sboot.state import StateDir
from k8sboot.vagrant import read_environment
from k8sboot.versions import DEFAULT_VERSION


@click.command("init", short_help="Write a commented starter cluster file.")
@click.option("--name", default="demo", show_default=True, help="Cluster name.")
@click.option("--control-planes", default=1, show_default=True, help="Control-plane hosts.")
@click.option("--workers", default=2, show_default=True, help="Worker hosts.")
@click.option(
    "--addresses",
    default="192.168.56.11",
    show_default=True,
    help="Host addresses, comma-separated; a single one counts up from there.",
)
@click.option("--endpoint", help="Virtual IP for the API servers (needed with 2+ control planes).")
@click.option("--kubernetes-version", default=DEFAULT_VERSION, show_default=True)
@click.option(
    "--ssh-user",
    default="root",
    show_default=True,
    help="The user k8sboot logs in as: root, or one with passwordless sudo.",
)
@click.option(
    "--ssh-key",
    help="The private key for every host (default: your SSH agent and default keys).",
)
@click.option(
    "--from-vagrant",
    is_flag=True,
    help="Take the hosts from the running Vagrant machines here.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@options.shared(vagrant=False, output=())
@pass_app
def command(
    app: App,
    name: str,
    control_planes: int,
    workers: int,
    addresses: str,
    endpoint: str | None,
    kubernetes_version: str,
    ssh_user: str,
    ssh_key: str | None,
    from_vagrant: bool,
    force: bool,
) -> None:
    """Write a commented starter cluster file.

    \b
    Examples:
      k8sboot init --workers 2 --addresses 10.0.0.11   # 10.0.0.11 to .13
      k8sboot init --workers 1 --addresses 192.168.1.5,192.168.1.9   # hosts apart
      k8sboot init --control-planes 3 --workers 2 --endpoint 10.0.0.10
      k8sboot init --ssh-user debian --ssh-key ~/.ssh/id_ed25519 --addresses 10.0.0.11
      k8sboot init --from-vagrant
    """
    if ssh_key is not None and not Path(ssh_key).expanduser().is_file():
        raise UserError(f"--ssh-key: {ssh_key}: no such file")
    spec_path = app.spec_path
    refuse_directory(spec_path)
    if spec_path.exists() and not force:
        raise UserError(f"{spec_path} exists; pass --force to overwrite it")
    if not spec_path.parent.is_dir():
        raise UserError(f"-f {spec_path}: no directory {spec_path.parent}; create it first")
    if from_vagrant:
        environment = read_environment()
        hosts = vagrant_hosts(environment.spec_hosts())
        if sum("control-plane" in h.roles for h in hosts) > 1:
            endpoint = endpoint or environment.endpoint
    else:
        hosts = numbered_hosts(control_planes, workers, addresses.split(","))
    starter = Starter(
        name=name,
        version=kubernetes_version,
        hosts=hosts,
        endpoint_address=endpoint,
        ssh_user=ssh_user,
        ssh_key=ssh_key,
    )
    text = starter.render()
    cluster = spec_from_text(text, spec_path).cluster  # never write a file that would not validate
    try:
        spec_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"-f {spec_path}: cannot write ({exc.strerror})") from None
    assert cluster.state_dir is not None
    # Made now, ignored by git, before any key or kubeconfig lands in it.
    StateDir(cluster.state_dir).ensure()
    click.echo(f"wrote {spec_path}; check it with `k8sboot validate -f {spec_path}`")
    click.echo(
        f"state (host keys, kubeconfig, backups, etcd CA key) goes to {cluster.state_dir}, "
        "which git ignores"
    )
