"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

import click

spec_file = click.option(
    "-f",
    "--file",
    "spec_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default="cluster.yaml",
    show_default=True,
    envvar="K8SBOOT_FILE",
    show_envvar=True,
    help="The cluster file.",
)

vagrant = click.option(
    "--vagrant",
    is_flag=True,
    help="Take the hosts from the Vagrant machines here (the cluster file is then optional).",
)


def output(*formats: str):
    return click.option(
        "-o",
        "--output",
        type=click.Choice(formats),
        default=formats[0],
        show_default=True,
        help="Output format.",
    )


verbose = click.option("-v", "--verbose", count=True, help="Say more; repeat for more still.")
debug = click.option(
    "--debug",
    is_flag=True,
    envvar="K8SBOOT_DEBUG",
    help="Show the traceback of an unexpected error.",
)


def common(command):
    """-v and --debug, on every command (the error boundary reads --debug itself)."""
    return verbose(debug(command))
