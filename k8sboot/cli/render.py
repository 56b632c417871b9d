from __future__ import annotations

import os
from pathlib import Path

import click

from k8sboot.cli import options
from k8sboot.cli.common import echo_json, load
from k8sboot.render import host_files


@click.command("render")
@options.spec_file
@options.vagrant
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default="rendered",
    show_default=True,
    help="Directory to write into: OUT/<host>/<path on the host>.",
)
@options.output("text", "json")
@options.common
def command(
    spec_path: Path, vagrant: bool, out_dir: Path, output: str, verbose: int, **_: object
) -> None:
    """Write every file k8sboot would put on each host, for inspection.

    Join tokens and certificate keys are created only right before a join, so the
    rendered join configurations carry placeholders in their place.
    """
    cluster = load(spec_path, vagrant).cluster
    written = []
    for host in cluster.hosts:
        for file in host_files(cluster, host):
            target = out_dir / host.name / file.path.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content, encoding="utf-8")
            os.chmod(target, file.mode)
            written.append({"host": host.name, "path": str(file.path), "file": str(target)})
            if verbose and output == "text":
                click.echo(f"{host.name}: {file.path} -> {target}")
    if output == "json":
        echo_json(written)
    else:
        click.echo(f"wrote {len(written)} files for {len(cluster.hosts)} hosts under {out_dir}/")
