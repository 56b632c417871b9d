"""The command line. The only package that imports click."""

from __future__ import annotations

import os
import sys

import click

from k8sboot.errors import EXIT_FAILURE, K8sbootError

EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """The one error boundary: exceptions become one line on stderr and an exit code."""
    from k8sboot.cli.app import cli

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("K8SBOOT_DEBUG", "") not in ("", "0")
    try:
        code = cli.main(args=args, prog_name="k8sboot", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted; re-run the same command to carry on", err=True)
        code = EXIT_INTERRUPTED
    except K8sbootError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        code = exc.exit_code
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (run again with --debug for details)",
            err=True,
        )
        code = EXIT_FAILURE
    sys.exit(code if isinstance(code, int) else 0)
