"""Options shared by several commands, defined once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import click

spec_file = click.option(
    "-f",
    "--file",
    "spec_path",
    type=click.Path(path_type=Path),  # a directory is refused in one line by the loader
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


dry_run = click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")

wait_timeout = click.option(
    "--wait-timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds to wait for nodes to become Ready.",
)


class Duration(click.ParamType):
    """Seconds, or a number with a unit: 90s, 10m, 1h."""

    name = "duration"
    UNITS: ClassVar[dict[str, int]] = {"": 1, "s": 1, "m": 60, "h": 3600}

    def convert(self, value, param, ctx):
        if isinstance(value, int | float):
            return float(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
        if not match or float(match[1]) <= 0:
            self.fail(f"{value!r} is not a duration like 600, 90s or 10m", param, ctx)
        return float(match[1]) * self.UNITS[match[2]]
