"""The root command group and the one error boundary of the command line."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from k8sboot import __version__, runlog
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
from k8sboot.cli.common import App, echo_json
from k8sboot.errors import (
    EXIT_CODES,
    EXIT_DETAILED_USAGE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    K8sbootError,
    Terminated,
)
from k8sboot.runlog import SECRETS

# Click >= 8.2 raises it for a group called without a command; its message is the help.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
EXITS = "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES)
EPILOG = f"""\b
{textwrap.fill(f"Exit codes: {EXITS}.", 78)}
Shell completion: eval "$(_K8SBOOT_COMPLETE=bash_source k8sboot)" in ~/.bashrc
(zsh_source in ~/.zshrc; fish: _K8SBOOT_COMPLETE=fish_source k8sboot | source)
\b
"""


class K8sbootGroup(click.Group):
    """Makes the App the commands share, and turns every exception into one line on stderr
    and an exit code; tracebacks only with --debug (or K8SBOOT_DEBUG=1). However the
    command ends, its run log ends with how, and with -o json so does its output."""

    def main(self, args: Sequence[str] | None = None, **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        if os.environ.get(f"_{(extra.get('prog_name') or 'k8sboot').upper()}_COMPLETE"):
            return super().main(args, **extra)  # shell completion manages its own exit
        extra["obj"] = app = App()
        given = list(sys.argv[1:] if args is None else args)
        logs_before = len(runlog.OPENED)
        # Until it is known how the command ended (a BaseException --debug lets through).
        code, error = EXIT_FAILURE, "internal error"
        try:
            with _terminating_raises():
                try:
                    code = super().main(given, standalone_mode=False, **extra)
                    code, error = (code if isinstance(code, int) else 0), None
                except NO_ARGS_IS_HELP as exc:  # `k8sboot node` alone: the group's help
                    exc.show()
                    code, error = _failed(app, exc.exit_code), exc.format_message()
                except click.ClickException as exc:
                    error = _one_line(exc)
                    click.echo(f"error: {error}", err=True)
                    code = _failed(app, exc.exit_code)
                    if isinstance(exc, click.UsageError) and _asks_json(exc.ctx, given):
                        app.output = "json"  # refused before -o was read
                except (click.exceptions.Abort, KeyboardInterrupt) as exc:
                    stopped = isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)
                    error = f"{'terminated' if stopped else 'interrupted'}; {AGAIN}"
                    click.echo(error, err=True)
                    code = EXIT_INTERRUPTED
                except K8sbootError as exc:
                    code, error = _failed(app, exc.exit_code), SECRETS(str(exc))
                    if app.debug:
                        raise
                    click.echo(f"error: {error}", err=True)
                except Exception as exc:
                    code = EXIT_FAILURE
                    error = f"internal error: {type(exc).__name__}: {SECRETS(str(exc))}"
                    if app.debug:
                        raise
                    click.echo(f"{error} (run again with --debug for the traceback)", err=True)
        finally:
            _ended(app, code, error, runlog.OPENED[logs_before:])
            del runlog.OPENED[logs_before:]
        sys.exit(code)


AGAIN = "run the same command again to carry on"


def _one_line(exc: click.ClickException) -> str:
    """Click's message, and for a usage error the help that shows the right usage: one
    line instead of Click's usage, hint and message."""
    message = exc.format_message().rstrip(".")
    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "k8sboot"
        message += f" (see {where} --help)"
    return message


def _failed(app: App, code: int) -> int:
    return EXIT_DETAILED_USAGE if code == EXIT_USAGE and app.detailed_exitcode else code


def _asks_json(ctx: click.Context | None, given: list[str]) -> bool:
    """Whether a command line click refused asked the command for JSON output."""
    output = ctx and next((p for p in ctx.command.params if p.name == "output"), None)
    if not isinstance(output, click.Option) or "json" not in getattr(output.type, "choices", ()):
        return False
    pairs = zip(given, [*given[1:], ""], strict=True)
    flags = ("-o", "--output")
    return any((a in flags and b == "json") or a in ("-ojson", "--output=json") for a, b in pairs)


def _ended(app: App, code: int, error: str | None, logs: list[Path]) -> None:
    """How the command ended, where it is kept: at the end of the newest run log it
    opened and, with -o json, as the last event of a workflow's stream, or as the
    document of a read-only command that could not make its own."""
    log = logs[-1] if logs else None
    if log is not None:
        runlog.record_end(log, code, error)
    if not app.json:
        return
    if app.streams:
        app.events().command_finished(code, error, str(log) if log else None)
    elif error is not None:
        echo_json({"ok": False, "exit_code": code, "error": error})


@contextmanager
def _terminating_raises() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread, once: the run ends as after Ctrl-C
    (its lock released, its output and log ended); a second SIGTERM does not cut that
    short (SIGKILL still does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def terminate(*_: object) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group(
    cls=K8sbootGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="k8sboot")
def cli() -> None:
    """Bring up and maintain kubeadm Kubernetes clusters over SSH.

    \b
    Examples:
      k8sboot init --control-planes 1 --workers 2 --addresses 10.0.0.11
      k8sboot up
      k8sboot health
      k8sboot node drain w1
    """


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
