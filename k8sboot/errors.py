"""The one exception hierarchy. The CLI maps each class to its exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # something failed on a machine or in the cluster
EXIT_USAGE = 2  # bad input: the message names what to fix
EXIT_PENDING = 2  # plan --detailed-exitcode: changes pending, as Terraform says it
EXIT_UNSAFE = 3  # refused because it would be unsafe (e.g. break etcd quorum)
# Bad input under plan --detailed-exitcode, where 2 means changes pending: a typo in a
# script must not read as a plan to apply.
EXIT_DETAILED_USAGE = 4
EXIT_INTERRUPTED = 130  # as a shell says of SIGINT

# Every exit code, as `--help` and the README list them.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_FAILURE, "a failure on a machine or in the cluster"),
    (EXIT_USAGE, "bad input or usage (the message names what to fix)"),
    (EXIT_PENDING, "changes pending, for plan --detailed-exitcode"),
    (EXIT_UNSAFE, "refused as unsafe"),
    (EXIT_DETAILED_USAGE, "bad input or usage, for plan --detailed-exitcode"),
    (EXIT_INTERRUPTED, "interrupted"),
)


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, a service stopped): ends a run as Ctrl-C does, its
    lock released, its event stream and run log ended, exit code EXIT_INTERRUPTED."""
