"""The root command group: every subcommand is registered here."""

from __future__ import annotations

import click

from k8sboot import __version__
from k8sboot.cli import init, inventory, render, validate

EPILOG = """\b
Exit codes: 0 success; 1 a failure on a machine or in the cluster;
2 bad input or usage (the message names what to fix); 3 refused as unsafe.
Shell completion (bash): eval "$(_K8SBOOT_COMPLETE=bash_source k8sboot)"

"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="k8sboot")
def cli() -> None:
    """Bring up and maintain kubeadm Kubernetes clusters over SSH."""


for command in (init.command, validate.command, render.command, inventory.command):
    cli.add_command(command)
