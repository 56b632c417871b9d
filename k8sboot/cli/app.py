"""The root command group and the one error boundary of the command line."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import click

from k8sboot import __version__
from k8sboot.cli import (
    certs,
    etcd,
    health,
    init,
    inventory,
    kubeconfig,
    nodes,
    render,
    run,
    ssh,
    upgrade,
    validate,
)
from k8sboot.cli.common import App
from k8sboot.errors import (
    EXIT_CODES,
    EXIT_DETAILED_USAGE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    K8sbootError,
)
from k8sboot.runlog import SECRETS

EXITS = "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES)
EPILOG = f"""\b
{textwrap.fill(f"Exit codes: {EXITS}.", 78)}
Shell completion (bash): eval "$(_K8SBOOT_COMPLETE=bash_source k8sboot)"
\b
"""


class K8sbootGroup(click.Group):
    """Makes the App the commands share, and turns every exception into one line on stderr
    and an exit code; tracebacks only with --debug (or K8SBOOT_DEBUG=1)."""

    def main(self, args: Sequence[str] | None = None, **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        if os.environ.get(f"_{(extra.get('prog_name') or 'k8sboot').upper()}_COMPLETE"):
            return super().main(args, **extra)  # shell completion manages its own exit
        extra["obj"] = app = App()
        try:
            code = super().main(args, standalone_mode=False, **extra)
        except click.ClickException as exc:
            exc.show()
            code = _failed(app, exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("interrupted; run the same command again to carry on", err=True)
            code = EXIT_INTERRUPTED
        except K8sbootError as exc:
            if app.debug:
                raise
            click.echo(f"error: {SECRETS(str(exc))}", err=True)
            code = _failed(app, exc.exit_code)
        except Exception as exc:
            if app.debug:
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {SECRETS(str(exc))} "
                "(run again with --debug for the traceback)",
                err=True,
            )
            code = EXIT_FAILURE
        sys.exit(code if isinstance(code, int) else 0)


def _failed(app: App, code: int) -> int:
    return EXIT_DETAILED_USAGE if code == EXIT_USAGE and app.detailed_exitcode else code


@click.group(
    cls=K8sbootGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="k8sboot")
def cli() -> None:
    """Bring up and maintain kubeadm Kubernetes clusters over SSH."""


for command in (
    init.command,
    validate.command,
    render.command,
    inventory.command,
    run.plan,
    run.up,
    run.reset,
    upgrade.command,
    run.down,
    nodes.group,
    certs.group,
    health.command,
    kubeconfig.command,
    ssh.command,
    etcd.group,
):
    cli.add_command(command)
