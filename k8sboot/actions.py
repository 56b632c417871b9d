"""Actions: small frozen records of one change a step wants made.

Steps return them as their plan; the executor is the only code that carries them out.
Each describes itself for `k8sboot plan`, and no description ever contains a secret
(secrets are created at execution time, not planned).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import PurePosixPath

from k8sboot.render import RenderedFile


@dataclass(frozen=True)
class Action(ABC):
    @property
    @abstractmethod
    def hosts(self) -> tuple[str, ...]: ...

    @abstractmethod
    def describe(self) -> str: ...


@dataclass(frozen=True)
class OnThisMachine(Action):
    """An action on the operator's machine (the state directory, the catalogue): no host
    is touched."""

    @property
    def hosts(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class OnHost(Action):
    """An action carried out on one host (or through it, for a cluster-wide question)."""

    host: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host,)


@dataclass(frozen=True)
class WriteFiles(OnHost):
    """Replace files on a host; restart a service afterwards when any of them changed."""

    files: tuple[RenderedFile, ...]
    restart: str | None = None

    def describe(self) -> str:
        if not self.files:
            return f"restart {self.restart} (it has not read its configuration yet)"
        paths = ", ".join(str(f.path) for f in self.files)
        then = f", then restart {self.restart}" if self.restart else ""
        return f"write {paths}{then}"


@dataclass(frozen=True)
class Fetched:
    """A release file k8sboot fetches where it runs (never on the hosts, which may have no
    way out), checks against its pinned sha256 and puts on a host."""

    url: str
    sha256: str
    path: PurePosixPath


@dataclass(frozen=True)
class RunCommands(Action):
    """Plain commands on hosts, in parallel; used by reset and maintenance."""

    commands: tuple[tuple[str, str], ...]  # (host, command)
    title: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(host for host, _ in self.commands))

    def describe(self) -> str:
        return f"{self.title} on {', '.join(self.hosts)}"


def listed(names: tuple[str, ...]) -> str:
    return ", ".join(names)
