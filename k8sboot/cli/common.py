"""The App every command takes: what the shared options say, and the load, run and
report lines the commands share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from k8sboot import pipeline
from k8sboot.report import JsonReporter, TextReporter
from k8sboot.spec import Cluster, LoadedSpec, load_spec
from k8sboot.vagrant import read_environment, run_vagrant


@dataclass
class App:
    """Made once by the root group; the shared options fill it."""

    spec_path: Path = Path("cluster.yaml")
    vagrant: bool = False
    output: str = "text"
    verbose: int = 0
    debug: bool = False
    detailed_exitcode: bool = False  # bad input then has its own exit code

    @property
    def json(self) -> bool:
        return self.output == "json"

    def load(self, vagrant_up: bool = False, allow_stopped: bool = False) -> LoadedSpec:
        """Load and validate the cluster file; warnings go to stderr, errors raise."""
        loaded = read_spec(self.spec_path, self.vagrant, vagrant_up, allow_stopped)
        for warning in loaded.warnings:
            click.echo(f"warning: {self.spec_path}: {warning}", err=True)
        return loaded

    def cluster(self, vagrant_up: bool = False, allow_stopped: bool = False) -> Cluster:
        return self.load(vagrant_up, allow_stopped).cluster

    def run(
        self, workflow: pipeline.Workflow, cluster: Cluster, **options: Any
    ) -> pipeline.RunResult:
        reporter = JsonReporter() if self.json else TextReporter(verbose=self.verbose)
        return pipeline.run(workflow, cluster, reporter, **options)


pass_app = click.make_pass_decorator(App, ensure=True)


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
