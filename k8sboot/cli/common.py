"""The App every command takes: what the shared options say, and the load, run and
report lines the commands share."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from k8sboot import pipeline
from k8sboot.report import JsonReporter, TextReporter
from k8sboot.spec import Cluster, LoadedSpec, load_spec
from k8sboot.vagrant import VagrantEnvironment, read_environment, run_vagrant


@dataclass
class App:
    """Made once by the root group; the shared options fill it."""

    spec_path: Path = Path("cluster.yaml")
    vagrant: bool = False
    output: str = "text"
    verbose: int = 0
    debug: bool = False
    detailed_exitcode: bool = False  # bad input then has its own exit code
    # The command runs a workflow: with -o json its output is the event stream, which
    # ends with one run_finished however the command ends.
    streams: bool = False
    started: float = field(default_factory=time.monotonic)
    _events: JsonReporter | None = None

    @property
    def json(self) -> bool:
        return self.output == "json"

    environment: VagrantEnvironment | None = None  # the Vagrant machines, once read

    def load(self, allow_stopped: bool = False) -> LoadedSpec:
        """Load and validate the cluster file; warnings go to stderr, errors raise. Reads
        only: it never starts a machine."""
        if self.vagrant and self.environment is None:
            self.environment = read_environment()
        loaded = read_spec(self.spec_path, self.environment, allow_stopped)
        for warning in loaded.warnings:
            click.echo(f"warning: {self.spec_path}: {warning}", err=True)
        return loaded

    def cluster(self, allow_stopped: bool = False) -> Cluster:
        return self.load(allow_stopped).cluster

    def start_machines(self) -> None:
        """With --vagrant: `vagrant up` the machines that are not running (a change, so
        only commands that change machines call it, and never on a dry run)."""
        if not self.vagrant:
            return
        environment = read_environment()
        stopped = [m.name for m in environment.machines if not m.running]
        if stopped:
            click.echo(f"vagrant up: starting {', '.join(stopped)} ...", err=True)
            run_vagrant(["up", "--parallel"], environment.root, timeout=3600)
            environment = read_environment()
        self.environment = environment

    def events(self) -> JsonReporter:
        """The one event stream of the command, whatever workflows it runs."""
        if self._events is None:
            self._events = JsonReporter(started=self.started)
        return self._events

    def run(
        self, workflow: pipeline.Workflow, cluster: Cluster, **options: Any
    ) -> pipeline.RunResult:
        reporter = self.events() if self.json else TextReporter(verbose=self.verbose)
        return pipeline.run(workflow, cluster, reporter, **options)


class RunsWorkflow(click.Command):
    """A command that runs a workflow (with `streams_with`, only when that flag is
    given). Marked before its arguments are read, so that a command line refused there
    ends its event stream too."""

    def __init__(self, *args: Any, streams_with: str | None = None, **attributes: Any):
        super().__init__(*args, **attributes)
        self.streams_with = streams_with

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        app = ctx.ensure_object(App)
        app.streams = self.streams_with is None or f"--{self.streams_with}" in args
        rest = super().parse_args(ctx, args)
        if self.streams_with is not None:
            app.streams = bool(ctx.params.get(self.streams_with))
        return rest


pass_app = click.make_pass_decorator(App, ensure=True)


def read_spec(
    spec_path: Path, environment: VagrantEnvironment | None = None, allow_stopped: bool = False
) -> LoadedSpec:
    """With a Vagrant `environment`, the hosts are its machines, and the cluster file
    (optional then) provides everything else."""
    if environment is not None:
        defaults: dict = {"name": "vagrant"}
        if environment.endpoint:
            defaults["controlPlaneEndpoint"] = {"type": "kube-vip", "address": environment.endpoint}
        return load_spec(spec_path, hosts=environment.spec_hosts(allow_stopped), defaults=defaults)
    return load_spec(spec_path)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
