"""The one exception hierarchy. The CLI maps each class to its exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # something failed on a machine or in the cluster
EXIT_USAGE = 2  # bad input: the message names what to fix
EXIT_UNSAFE = 3  # refused because it would be unsafe (e.g. break etcd quorum)


class K8sbootError(Exception):
    """Base class: the message is one line, written for the operator."""

    exit_code = EXIT_FAILURE


class UserError(K8sbootError):
    """Bad input, bad usage or a bad file. Nothing was changed."""

    exit_code = EXIT_USAGE


class SpecError(UserError):
    """The cluster file is invalid. Carries every problem found, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        first = problems[0]
        more = len(problems) - 1
        message = first if not more else f"{first} (and {more} more; `k8sboot validate` lists all)"
        super().__init__(message)


class MachineError(K8sbootError):
    """A command on a machine, or the cluster itself, failed."""

    exit_code = EXIT_FAILURE


class NoApiAnswer(MachineError):
    """A step needs the Kubernetes API, and the API does not answer."""


class UnsafeError(K8sbootError):
    """Refused because it would be unsafe; `--force` may override where offered."""

    exit_code = EXIT_UNSAFE
