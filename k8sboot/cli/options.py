"""Options the commands share, each declared once.

-f, --vagrant, -o, -v and --debug stand after the command's name, where operators put
them; they fill the App the root group made instead of becoming the command's
arguments, so that a command takes the App and its own options only."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import click

from k8sboot.cli.common import App


def filling(field: str, *declarations: str, **attributes: Any) -> Callable:
    """An option whose value goes into the App, not into the command's arguments."""

    def store(ctx: click.Context, _: click.Parameter, value: Any) -> None:
        setattr(ctx.ensure_object(App), field, value)

    return click.option(*declarations, expose_value=False, callback=store, **attributes)


def shared(
    *, spec_file: bool = True, vagrant: bool = True, output: tuple[str, ...] = ("text", "json")
) -> Callable:
    """The shared options a command takes; the first output format is the default."""
    chosen = [
        filling(
            "debug",
            "--debug",
            is_flag=True,
            envvar="K8SBOOT_DEBUG",
            help="Show the traceback of an unexpected error.",
        ),
        filling("verbose", "-v", "--verbose", count=True, help="Say more; repeat for more still."),
    ]
    if output:
        chosen.append(
            filling(
                "output",
                "-o",
                "--output",
                type=click.Choice(output),
                default=output[0],
                show_default=True,
                help="Output format.",
            )
        )
    if vagrant:
        chosen.append(
            filling(
                "vagrant",
                "--vagrant",
                is_flag=True,
                help="Take the hosts from the Vagrant machines here (the cluster file is then "
                "optional).",
            )
        )
    if spec_file:
        chosen.append(
            filling(
                "spec_path",
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
        )

    def decorate(command: Callable) -> Callable:
        for option in chosen:  # the first added shows last in --help
            command = option(command)
        return command

    return decorate


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


drain_timeout = click.option(
    "--timeout",
    type=Duration(),
    default="10m",
    show_default=True,
    help="How long a drain may take (seconds, or 90s, 10m, 1h).",
)
emptydir = click.option(
    "--delete-emptydir-data",
    is_flag=True,
    help="Evict pods with emptyDir volumes too; their emptyDir data is deleted.",
)
