"""Helpers the commands share: loading the spec and writing results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from k8sboot.report import JsonReporter, Reporter, TextReporter
from k8sboot.spec import LoadedSpec, load_spec
from k8sboot.vagrant import read_environment, run_vagrant


def load(
    spec_path: Path, vagrant: bool = False, vagrant_up: bool = False, allow_stopped: bool = False
) -> LoadedSpec:
    """Load and validate the cluster file; warnings go to stderr, errors raise."""
    loaded = read_spec(spec_path, vagrant, vagrant_up, allow_stopped)
    for warning in loaded.warnings:
        click.echo(f"warning: {spec_path}: {warning}", err=True)
    return loaded


def read_spec(
    spec_path: Path, vagrant: bool = False, vagrant_up: bool = False, allow_stopped: bool = False
) -> LoadedSpec:
    """With `vagrant`, the hosts are the machines of the Vagrant environment here, and the
    cluster file (optional then) provides everything else. With `vagrant_up`, machines
    that are not running are brought up first."""
    if vagrant:
        environment = read_environment()
        if vagrant_up and not all(m.running for m in environment.machines):
            click.echo("vagrant up ...", err=True)
            run_vagrant(["up", "--parallel"], environment.root, timeout=3600)
            environment = read_environment()
        defaults: dict = {"name": "vagrant"}
        if environment.endpoint:
            defaults["controlPlaneEndpoint"] = {"type": "kube-vip", "address": environment.endpoint}
        return load_spec(spec_path, hosts=environment.spec_hosts(allow_stopped), defaults=defaults)
    return load_spec(spec_path)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def reporter(output: str, verbose: int) -> Reporter:
    return JsonReporter() if output == "json" else TextReporter(verbose=verbose)
