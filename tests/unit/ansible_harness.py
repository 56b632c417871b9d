"""Runs of k8sboot's Ansible adapter on this machine, without SSH: a cluster whose state
directory has spaces and a quote in its path, and playbooks of the test's own."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from k8sboot import ansible
from k8sboot.spec import Cluster, spec_from_text
from k8sboot.state import StateDir

from .conftest import BASE

# Two spaces in a row: OpenSSH's `ssh -G` prints a list of files joined by one space, so
# only a path read as one file keeps both.
AWKWARD_DIR = "my cluster's  dir"


def awkward_cluster(base: Path, ssh: dict[str, Any] | None = None) -> Cluster:
    """A cluster whose file, key and state directory are all under AWKWARD_DIR; `ssh`
    adds to its ssh settings."""
    directory = base / AWKWARD_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "id key").write_text("not a key\n")
    spec = {**BASE, "ssh": {"key": "id key", **(ssh or {})}}
    (directory / "cluster.yaml").write_text(yaml.safe_dump(spec))
    return spec_from_text(yaml.safe_dump(spec), directory / "cluster.yaml").cluster


def playbooks(base: Path, tasks: list[dict[str, Any]]) -> Path:
    """A playbooks directory with test.yml, a play of `tasks`: what ansible.data_dir
    should answer for the test."""
    directory = base / "playbooks"
    directory.mkdir(exist_ok=True)
    play = {"hosts": "all", "gather_facts": False, "tasks": tasks}
    (directory / "test.yml").write_text(yaml.safe_dump([play]))
    return directory


def run(
    base: Path,
    per_host: dict[str, dict[str, Any]],
    extravars: dict[str, Any] | None = None,
    on_event: Any = None,
    ssh: dict[str, Any] | None = None,
) -> Path:
    """run_playbook of test.yml (see playbooks) for the hosts of `per_host`."""
    cluster = awkward_cluster(base, ssh)
    assert cluster.state_dir is not None
    state = StateDir(cluster.state_dir).ensure()
    return ansible.run_playbook(cluster, state, "test.yml", per_host, extravars or {}, on_event)


LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def _interrupt_me(base: Path, marker: str) -> None:
    """A k8sboot command (through its real error boundary) whose Ansible task runs until
    it is interrupted; `marker` names the task's process. Says "task started" once
    k8sboot has seen the task start."""
    import click

    from k8sboot.cli.app import cli

    # One process, with no children to outlive it, that has the marker in its arguments.
    task = {
        "ansible.builtin.command": f"{sys.executable} -c 'import time; time.sleep(600)' {marker}"
    }
    ansible.data_dir = lambda _: playbooks(base, [task])  # type: ignore[assignment]

    @click.command("sleep")
    def sleep() -> None:
        run(base, {"cp1": LOCAL}, on_event=said_started)

    def said_started(event: dict[str, Any]) -> None:
        if event.get("event") == "runner_on_start":
            print("task started", flush=True)

    cli.add_command(sleep)
    cli.main(["sleep"], prog_name="k8sboot")


if __name__ == "__main__":
    # The marker comes from the environment: in the arguments it would name this process.
    _interrupt_me(Path(sys.argv[1]), os.environ["K8SBOOT_TEST_MARKER"])
