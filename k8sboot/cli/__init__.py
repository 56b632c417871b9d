"""The command line. The only package that imports click."""

from __future__ import annotations


def main() -> None:
    from k8sboot.cli.app import cli

    cli.main(prog_name="k8sboot")
