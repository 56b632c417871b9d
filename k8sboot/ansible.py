"""The ansible-runner adapter: run a playbook on some hosts, report per-host failures.

Ansible gets no secret ever (no tokens or keys in its variables); its artifacts in the
state directory still name hosts and variables, so they are private (0600, directories
0700) like the rest of the state. Host keys are checked against k8sboot's known_hosts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml

from k8sboot.errors import MachineError, Terminated
from k8sboot.inventory import ansible_ssh_args, host_vars
from k8sboot.resources import data_dir
from k8sboot.spec import Cluster
from k8sboot.state import StateDir, private_dir, run_id, write_private

KEEP_RUNS = 10
STOPPING = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and a CI job cancelled


class PlaybookFailed(MachineError):
    """A run that did not succeed everywhere; `hosts` are those where it failed (all of
    them when Ansible did not say)."""

    def __init__(self, message: str, hosts: set[str]):
        super().__init__(message)
        self.hosts = hosts


def run_playbook(
    cluster: Cluster,
    state: StateDir,
    playbook: str,
    per_host: dict[str, dict[str, Any]],
    extravars: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Run `playbook` (under playbooks/) on the hosts in `per_host`, each with its own
    variables. Returns the run's artifact directory; raises PlaybookFailed naming every
    host that failed, its task and message. Ctrl-C stops ansible-playbook and raises
    KeyboardInterrupt, as anywhere else in k8sboot."""
    import ansible_runner  # slow to import; only runs that converge something need it

    root = private_dir(state.ansible / run_id())
    inventory = {
        "all": {
            "hosts": {
                name: {**host_vars(cluster, cluster.host(name)), **values}
                for name, values in per_host.items()
            },
        }
    }
    inventory_file = root / "inventory" / "hosts.yml"
    write_private(inventory_file, yaml.safe_dump(inventory, sort_keys=False).encode())
    ssh_args = [
        "-o", "ControlMaster=auto", "-o", "ControlPersist=60s",
        *ansible_ssh_args(state.known_hosts, cluster.ssh.host_key_policy),
    ]  # fmt: skip
    bin_dir = str(Path(sys.executable).parent)
    failures: dict[str, str] = {}
    interruption = _Interruption()

    def handle(event: dict[str, Any]) -> bool:
        interruption.playbook_pid = interruption.playbook_pid or event.get("pid")
        data = event.get("event_data", {})
        kind = event.get("event", "")
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            result = data.get("res", {})
            failed_items = [r for r in result.get("results", []) if r.get("failed")]
            if failed_items:  # a loop: the first failed item says more than the summary
                result = failed_items[0]
            message = result.get("msg") or result.get("stderr") or json.dumps(result)[:300]
            task = data.get("task", "?")
            failures[data.get("host", "?")] = f"task '{task}': {str(message).strip()[:400]}"
        if on_event is not None:
            on_event(event)
        return True

    with _private_files(), interruption.handling_ctrl_c():
        runner = ansible_runner.run(
            private_data_dir=str(root),
            playbook=str(data_dir("playbooks") / playbook),
            inventory=str(inventory_file),
            extravars=extravars,
            limit=",".join(per_host),
            forks=max(1, min(50, len(per_host))),
            quiet=True,
            event_handler=handle,
            cancel_callback=interruption.cancel,
            envvars={
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "ANSIBLE_ROLES_PATH": str(data_dir("playbooks") / "roles"),
                "ANSIBLE_PIPELINING": "True",
                "ANSIBLE_SSH_ARGS": shlex.join(ssh_args),
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_RETRY_FILES_ENABLED": "False",
                "ANSIBLE_NOCOLOR": "True",
                "ANSIBLE_LOCALHOST_WARNING": "False",
                "ANSIBLE_DEPRECATION_WARNINGS": "False",
            },
            # ansible-runner asks the cancel callback whenever a read of the playbook's
            # output returns, and after this many seconds of silence.
            settings={"suppress_ansible_output": True, "pexpect_timeout": 1},
        )
    _prune(state.ansible)
    if interruption.since is not None:
        raise Terminated if interruption.signal == signal.SIGTERM else KeyboardInterrupt
    if runner.status != "successful" or failures:
        details = "; ".join(f"{host}: {why}" for host, why in sorted(failures.items()))
        raise PlaybookFailed(
            f"Ansible {playbook} {runner.status}: {details or 'see the log'} "
            f"(log: {root / 'artifacts'})",
            set(failures) or set(per_host),
        )
    return root


class _Interruption:
    """Ctrl-C (or SIGTERM) during a run. ansible-playbook is stopped as a terminal would
    stop it: SIGINT (it ends its workers, which run in sessions of their own, and so their
    ssh; then it exits); SIGTERM a moment later should that be lost (ansible-playbook
    swallows a SIGINT that arrives while it forks a worker; its SIGTERM handler ends the
    workers it has by then); at last ansible-runner kills its process group, at once if it
    has not said its pid yet. Without a cancel callback of ours, ansible-runner would
    install a handler of its own that turns Ctrl-C into a "canceled" run, kills only the
    process group, and stays installed for the rest of the process."""

    SIGNALS = ((0.0, signal.SIGINT), (2.0, signal.SIGTERM))  # seconds after Ctrl-C
    GIVE_UP = 5.0

    def __init__(self) -> None:
        self.since: float | None = None
        self.signal: int | None = None  # the one that interrupted the run
        self.playbook_pid: int | None = None
        self._signalled = 0

    def __call__(self, number: int, _: object) -> None:
        if self.since is None:
            self.since, self.signal = time.monotonic(), number
            self._signal_playbook()

    def cancel(self) -> bool:
        """ansible-runner asks this whenever it has read output, or a second has passed."""
        if self.since is None:
            return False
        self._signal_playbook()
        return self.playbook_pid is None or time.monotonic() - self.since > self.GIVE_UP

    def _signal_playbook(self) -> None:
        assert self.since is not None
        elapsed = time.monotonic() - self.since
        due = [number for after, number in self.SIGNALS if elapsed >= after]
        while self.playbook_pid is not None and self._signalled < len(due):
            with suppress(ProcessLookupError):
                os.kill(self.playbook_pid, due[self._signalled])
            self._signalled += 1

    @contextmanager
    def handling_ctrl_c(self) -> Iterator[None]:
        """Ctrl-C, and SIGTERM alike."""
        # Only the main thread may set signal handlers (and only it gets Ctrl-C).
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self) for number in STOPPING}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


@contextmanager
def _private_files() -> Iterator[None]:
    """Files and directories that ansible-runner and ansible-playbook create (artifacts,
    fact cache, stderr) without modes of their own are 0600 and 0700. The umask is the
    process's: a run has the main thread, and nothing else writes files meanwhile."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _prune(runs: Path) -> None:
    """Keep the newest runs' artifacts only."""
    old = sorted(p for p in runs.iterdir() if p.is_dir())[:-KEEP_RUNS]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
