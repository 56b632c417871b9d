from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import click

from k8sboot.cli import options
from k8sboot.cli.common import App, echo_json, pass_app
from k8sboot.errors import UserError
from k8sboot.etcd.files import member_files
from k8sboot.render import (
    JoinSecrets,
    RenderedFile,
    cni_file,
    containerd_files,
    kubeadm_file,
)
from k8sboot.spec import Cluster, Host


@click.command("render", short_help="Write the files k8sboot would put on each host.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="rendered",
    show_default=True,
    help="Directory to write into: OUT/<host>/<path on the host>.",
)
@options.shared()
@pass_app
def command(app: App, out_dir: Path) -> None:
    """Write every file k8sboot would put on each host, for inspection.

    Join tokens and certificate keys are created only right before a join, so the
    rendered join configurations carry placeholders in their place.

    \b
    Examples:
      k8sboot render --out rendered
      k8sboot render -f prod.yaml --out /tmp/prod-files
    """
    cluster = app.cluster()
    planned = [
        (host.name, file, _inside(out_dir, host.name, file.path))
        for host in cluster.hosts
        for file in files_for(cluster, host)
    ]
    written = []
    for host_name, file, target in planned:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content, encoding="utf-8")
            os.chmod(target, file.mode)
        except OSError as exc:
            raise UserError(f"--out: cannot write {target}: {exc.strerror}") from None
        written.append({"host": host_name, "path": str(file.path), "file": str(target)})
        if app.verbose and not app.json:
            click.echo(f"{host_name}: {file.path} -> {target}")
    if app.json:
        echo_json({"ok": True, "out": str(out_dir), "files": written})
    else:
        click.echo(f"wrote {len(written)} files for {len(cluster.hosts)} hosts under {out_dir}/")


def _inside(out_dir: Path, host_name: str, path: PurePosixPath) -> Path:
    """OUT/<host>/<path on the host>, refused unless it stays under OUT once `..` and
    symbolic links are resolved: nothing the spec says may write elsewhere."""
    target = out_dir / host_name / path.relative_to("/")
    if not target.resolve().is_relative_to(out_dir.resolve()):
        raise UserError(f"--out: {host_name}'s {path} would be written outside {out_dir}; refused")
    return target


def files_for(
    cluster: Cluster, host: Host, secrets: JoinSecrets | None = None
) -> list[RenderedFile]:
    """Every file k8sboot writes to `host`, in the order they are needed."""
    if not (host.has("control-plane") or host.has("worker")):
        if cluster.etcd.topology != "external":
            return []
        # External etcd hosts run the distribution's etcd service with k8sboot's settings
        # (their certificates are issued at `up`, never rendered).
        return member_files(cluster, host)
    files = [*containerd_files(cluster), kubeadm_file(cluster, host, secrets)]
    if host is cluster.first_control_plane and cluster.networking.cni != "none":
        files.append(cni_file(cluster))
    return files
