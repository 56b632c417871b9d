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


class Duration(click.ParamType):
    """How long: 90s, 10m, 1h30m (units in that order, each at most once, as Go's and so
    kubectl's durations), or a bare number of seconds. Every timeout-like option takes
    this one form."""

    name = "duration"
    FORM = "a duration like 90s, 10m or 1h30m (a bare number is seconds)"
    UNITS: ClassVar[dict[str, int]] = {"h": 3600, "m": 60, "s": 1}
    PATTERN = re.compile("".join(rf"(?:(\d+(?:\.\d+)?){unit})?" for unit in UNITS))
    SECONDS = re.compile(r"\d+(?:\.\d+)?")

    def __init__(self, minimum: float = 1):
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            text = str(value).strip()
            parts = self.PATTERN.fullmatch(text)
            if self.SECONDS.fullmatch(text):
                seconds = float(text)
            elif text and parts:
                seconds = sum(
                    float(n) * self.UNITS[u]
                    for n, u in zip(parts.groups(), self.UNITS, strict=True)
                    if n
                )
            else:
                self.fail(f"{value!r} is not {self.FORM}", param, ctx)
        if seconds < self.minimum:
            least = f"{value!r} is not a duration of {self.minimum:g}s or more"
            self.fail(f"{least}: give {self.FORM}", param, ctx)
        return seconds


def _wait_timeout(hidden: bool = False) -> Callable:
    return click.option(
        "--wait-timeout",
        type=Duration(),
        default="10m",
        show_default=True,
        hidden=hidden,
        help="How long to wait for nodes to become Ready (90s, 10m, 1h30m).",
    )


wait_timeout = _wait_timeout()
wait_timeout_hidden = _wait_timeout(hidden=True)
drain_timeout = click.option(
    "--timeout",
    type=Duration(),
    default="10m",
    show_default=True,
    help="How long a drain may take (90s, 10m, 1h30m).",
)
emptydir = click.option(
    "--delete-emptydir-data",
    is_flag=True,
    help="Evict pods with emptyDir volumes too; their emptyDir data is deleted.",
)
