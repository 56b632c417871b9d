"""`k8sboot ssh NODE [-- COMMAND...]`: a shell or a command on a node."""

from __future__ import annotations

import os
import sys

import click

from k8sboot.cli import options
from k8sboot.cli.common import App, pass_app
from k8sboot.cli.completion import HostName
from k8sboot.errors import UserError
from k8sboot.session import ssh_command


@click.command("ssh", short_help="A shell or a command on a node, over k8sboot's SSH.")
@click.argument("node", type=HostName())
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@options.shared(output=())
@pass_app
def command(app: App, node: str, command: tuple[str, ...]) -> None:
    """Open a shell on NODE, or run COMMAND there. OpenSSH's client connects with
    k8sboot's SSH settings for the host (user, port, key) and its pinned host keys; COMMAND
    (after `--` when it has options) is run by the login shell, as `ssh` runs it. It runs
    as the SSH user: put `sudo` before what needs root. The exit code is the command's
    (255: ssh could not connect). A command gets a terminal when both stdin and stdout
    are one.

    \b
    Examples:
      k8sboot ssh cp1
      k8sboot ssh w1 -- sudo crictl ps
      k8sboot ssh cp1 -- 'sudo journalctl -u kubelet | tail -n 50'
    """
    cluster = app.cluster(allow_stopped=True)  # a stopped machine is not a reason to refuse
    if cluster.host(node) is None:
        names = ", ".join(h.name for h in cluster.hosts)
        raise UserError(f"{node} is not in the cluster file (hosts: {names})")
    tty = None if not command else sys.stdin.isatty() and sys.stdout.isatty()
    argv = ssh_command(cluster, node, command, tty)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)  # ssh's terminal handling and exit code are the user's
