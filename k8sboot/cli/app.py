"""The root command group and the one error boundary of the command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from k8sboot import __version__
from k8sboot.cli import certs, etcd, health, init, inventory, nodes, render, run, validate
from k8sboot.errors import EXIT_FAILURE, K8sbootError
from k8sboot.runlog import SECRETS

EXIT_INTERRUPTED = 130

EPILOG = """\b
Exit codes: 0 success; 1 a failure on a machine or in the cluster;
2 bad input or usage (the message names what to fix); 3 refused as unsafe.
Shell completion (bash): eval "$(_K8SBOOT_COMPLETE=bash_source k8sboot)"
\b
"""


class K8sbootGroup(click.Group):
    """Turns every exception into one line on stderr and an exit code; tracebacks only
    with --debug (or K8SBOOT_DEBUG=1)."""

    def main(self, args: Sequence[str] | None = None, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get("K8SBOOT_DEBUG", "") not in ("", "0")
        extra.pop("standalone_mode", None)
        if os.environ.get(f"_{(extra.get('prog_name') or 'k8sboot').upper()}_COMPLETE"):
            return super().main(args, **extra)  # shell completion manages its own exit
        try:
            code = super().main(args, standalone_mode=False, **extra)
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("interrupted; run the same command again to carry on", err=True)
            code = EXIT_INTERRUPTED
        except K8sbootError as exc:
            if debug:
                raise
            click.echo(f"error: {SECRETS(str(exc))}", err=True)
            code = exc.exit_code
        except Exception as exc:
            if debug:
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {SECRETS(str(exc))} "
                "(run again with --debug for the traceback)",
                err=True,
            )
            code = EXIT_FAILURE
        sys.exit(code if isinstance(code, int) else 0)


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
    run.down,
):
    cli.add_command(command)
for command in (nodes.group, certs.group, health.command):
    cli.add_command(command)
cli.add_command(etcd.group)
