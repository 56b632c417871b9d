"""Files, plain commands and Ansible runs."""

from __future__ import annotations

import json
import shlex

from k8sboot.actions import Converge, RunCommands, WriteFiles
from k8sboot.ansible import PlaybookFailed, run_playbook
from k8sboot.executor.core import Executor, Outcome, handles, raise_first
from k8sboot.host_state import STAMPS_DIR
from k8sboot.steps.node_setup import OWNED_FILES, PLAYBOOK
from k8sboot.transport import Connection

COMMAND_TIMEOUT = 900


@handles(WriteFiles)
def write_files(executor: Executor, action: WriteFiles) -> Outcome:
    connection = executor.transport[action.host]
    for file in action.files:
        executor.progress(action.host, f"write {file.path}")
        connection.write_file(str(file.path), file.content.encode(), file.mode)
    if action.restart:
        executor.progress(action.host, f"restart {action.restart}")
        connection.run(f"systemctl restart {shlex.quote(action.restart)}", timeout=180)
    return Outcome((action.host,))


@handles(RunCommands)
def run_commands(executor: Executor, action: RunCommands) -> Outcome:
    by_host: dict[str, list[str]] = {}
    for host, command in action.commands:
        by_host.setdefault(host, []).append(command)

    def run_all(connection: Connection) -> None:
        for command in by_host[connection.name]:
            executor.progress(connection.name, command)
            connection.run(command, timeout=COMMAND_TIMEOUT)

    raise_first(executor.transport.each(by_host, run_all))
    return Outcome(tuple(by_host))


@handles(Converge)
def converge(executor: Executor, action: Converge) -> Outcome:
    per_host = {host: json.loads(values) for host, values in action.host_vars}
    stamps = {host: values.pop("k8sboot_stamps") for host, values in per_host.items()}

    def on_event(event: dict) -> None:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_start" and data.get("host"):
            executor.progress(data["host"], data.get("task", ""))

    ctx = executor.ctx
    try:
        run_playbook(ctx.cluster, ctx.state, PLAYBOOK, per_host, {}, on_event)
    except PlaybookFailed as failed:
        _record_stamps(executor, per_host, stamps, set(per_host) - failed.hosts)
        raise
    _record_stamps(executor, per_host, stamps, set(per_host))
    return Outcome(action.hosts)


def _record_stamps(
    executor: Executor,
    per_host: dict[str, dict],
    stamps: dict[str, dict[str, str]],
    hosts: set[str],
) -> None:
    """The fingerprint of each role a host converged, once every task of the run succeeded
    there, followed by the hashes of the files the role owns (as they are now): the probe
    compares both with what it finds to see drift. One command per host, over k8sboot's
    own connections (Ansible took a task round trip per role and host)."""

    def record(connection: Connection) -> None:
        commands = [f"mkdir -p {STAMPS_DIR}"]
        for role in per_host[connection.name]["k8sboot_converge"]:
            stamp = f"{STAMPS_DIR}/{role}"
            files = " ".join(shlex.quote(f) for f in OWNED_FILES[role])
            # A file the role did not write here (no repository file with local packages)
            # is left out of the stamp, and so is not watched.
            hashes = f"sha256sum -- {files} 2>/dev/null; " if files else ""
            commands.append(
                f"{{ echo {shlex.quote(stamps[connection.name][role])}; {hashes}true; }}"
                f" > {stamp}.tmp && mv {stamp}.tmp {stamp}"
            )
        connection.run(" && ".join(commands), shown="record the converged roles' stamps")

    raise_first(executor.transport.each(sorted(hosts), record))
