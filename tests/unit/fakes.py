"""Hosts for tests: a connection that answers from a script, one whose commands run in a
shell on this machine, and a transport over either.

They stand in for k8sboot.transport's Connection and Transport: `run` (with its `check`,
`stdin` and `stdout_to`), `read_file`, `write_file`; `[name]`, `each`, `close`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from k8sboot.transport import CommandFailed, CommandResult, Transport


class UnexpectedCommand(BaseException):
    """A command no answer was scripted for. A BaseException so that no `except Exception`
    in the code under test (nor Transport.each) turns it into an observed host failure."""


class FakeConnection:
    """A host answering from `answers`: the first key found in a command picks the answer.
    An answer is text (stdout), bytes, other data (sent as JSON), a CommandResult (as it is,
    so it may fail), or an exception (raised). Commands run are recorded in `ran`; files
    live in `files`, read and written by read_file and write_file."""

    def __init__(
        self,
        name: str,
        answers: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
    ):
        self.name = name
        self.answers = answers or {}
        self.files = files if files is not None else {}
        self.ran: list[str] = []

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        stdout_to: Any = None,
        shown: str | None = None,
        **_: object,
    ) -> CommandResult:
        self.ran.append(command)
        answer = next((a for key, a in self.answers.items() if key in command), UnexpectedCommand)
        if answer is UnexpectedCommand:
            raise UnexpectedCommand(f"unexpected command on {self.name}: {command}")
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, CommandResult):
            result = answer
        else:
            if isinstance(answer, bytes):
                output = answer
            else:
                output = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
            result = CommandResult(self.name, shown or command, 0, output, "", 0.0)
        if stdout_to is not None:
            stdout_to.write(result.output)
        if check and not result.ok:
            raise CommandFailed(result, shown=shown)
        return result

    ask = run  # a question runs as any command does here

    def read_file(self, path: str, secret: bool = False) -> bytes | None:
        self.ran.append(f"read {path}")
        return self.files.get(path)

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        self.ran.append(f"write {path}")
        self.files[path] = content

    def close(self) -> None:
        pass


class LocalShell:
    """A host whose commands run in a shell on this machine. With `root`, the host's /etc
    and /var/lib/k8sboot are under that directory."""

    def __init__(self, name: str, root: Path | None = None):
        self.name = name
        self.root = root
        self.ran: list[str] = []

    def run(
        self, command: str, *, check: bool = True, stdin: bytes | None = None, **_: object
    ) -> CommandResult:
        self.ran.append(command)
        if self.root is not None:
            for top in ("/var/lib/k8sboot", "/etc/"):
                command = command.replace(top, f"{self.root}{top}")
        done = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, timeout=60)
        result = CommandResult(
            self.name, command, done.returncode, done.stdout, done.stderr.decode(), 0.0
        )
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    ask = run

    def close(self) -> None:
        pass


class FakeTransport(dict):
    """Connections by host name, fanned out over by the real Transport.each."""

    each = Transport.each

    @property
    def _connections(self) -> dict:
        return self

    @property
    def names(self) -> list[str]:
        return list(self)

    def close(self) -> None:
        for connection in self.values():
            connection.close()


def scripted(names, answers: dict[str, Any] | None = None) -> FakeTransport:
    """The named hosts, each answering `answers` (none: every command is unexpected)."""
    return FakeTransport({n: FakeConnection(n, dict(answers or {})) for n in names})
