"""The executor: the only code that changes anything on a machine.

It carries out actions through the SSH transport or an Ansible run. Each action type has
one handler, registered with @handles in the module of its kind (files, kubeadm, the
running cluster, etcd, nodes). Secrets (tokens, certificate keys) are created by handlers
at the last moment, travel on stdin, are registered with the log masker, and are deleted
again once the operation they were for has run.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from k8sboot.actions import Action, RunCommands, WriteFiles
from k8sboot.errors import MachineError
from k8sboot.facts import NodeStatus
from k8sboot.step import Context
from k8sboot.transport import Connection, Transport

Progress = Callable[[str, str], None]  # (host, what is happening)


A = TypeVar("A", bound=Action)


@dataclass(frozen=True)
class Outcome:
    """What an action did, for the pipeline to merge: the hosts where something changed,
    what to tell the user (as done: a dry run never executes), the Nodes it saw last, and
    the hosts whose observed state it changed in ways later steps read (the pipeline looks
    at them again rather than let those steps predict the change)."""

    changed: tuple[str, ...]
    detail: str = ""
    notes: tuple[str, ...] = ()
    nodes: dict[str, NodeStatus] | None = None
    reprobe: tuple[str, ...] = ()


Handler = Callable[["Executor", A], Outcome]


_HANDLERS: dict[type[Action], Handler] = {}


def handles(action_type: type[A]) -> Callable[[Handler], Handler]:
    """Register the function that carries out actions of `action_type`."""

    def register(handler: Handler) -> Handler:
        _HANDLERS[action_type] = handler
        return handler

    return register


class Executor:
    """Carries out actions with the transport that writes, which steps never get."""

    def __init__(self, ctx: Context, transport: Transport, progress: Progress | None = None):
        self.ctx = ctx
        self.transport = transport
        self.progress = progress or (lambda host, message: None)

    def execute(self, action: Action) -> Outcome:
        handler = _HANDLERS.get(type(action))
        if handler is None:
            raise TypeError(f"no executor for {type(action).__name__}")
        return handler(self, action)


def read_required(connection: Connection, path: str, secret: bool = False) -> bytes:
    content = connection.read_file(path, secret=secret)
    if content is None:
        raise MachineError(f"{connection.name}: {path} is missing")
    return content


def raise_first(results: dict[str, object]) -> None:
    """Raise the failure of a parallel fan-out: the only one as it is, several joined."""
    failures = {h: r for h, r in results.items() if isinstance(r, BaseException)}
    if len(failures) == 1:
        raise next(iter(failures.values()))
    if failures:
        raise MachineError("; ".join(f"{e}" for e in failures.values()))


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
