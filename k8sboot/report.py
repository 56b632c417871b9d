"""Progress and results: per-host progress for people (rich: live on a terminal, plain
lines on a pipe), or one JSON event per line for machines (`--output json`), ending with
one `run_finished` however the command ends. Every line passes the secret masker first."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from k8sboot.actions import Action
from k8sboot.preflight import Check
from k8sboot.runlog import SECRETS, Masker

MARK = {
    "ok": "[green]ok[/]",
    "fail": "[red]FAIL[/]",
    "skip": "[yellow]skip[/]",
    "warn": "[yellow]warn[/]",
}


class Reporter:
    """Base reporter: records what changed so that every form can summarise honestly."""

    def __init__(self, masker: Masker | None = None, started: float | None = None):
        self.mask = masker or SECRETS
        self.changed: dict[str, list[str]] = {}  # step -> hosts changed
        self.started = time.monotonic() if started is None else started

    def run_started(
        self, workflow: str, cluster: str, hosts: Sequence[str], dry_run: bool
    ) -> None: ...
    def step_started(self, title: str) -> None: ...
    def step_planned(
        self, title: str, actions: Sequence[Action], details: dict[int, str]
    ) -> None: ...
    def progress(self, host: str, message: str) -> None: ...
    def action_finished(
        self, step: str, action: Action, seconds: float, hosts: Sequence[str]
    ) -> None: ...
    def checks(self, checks: Sequence[Check]) -> None: ...
    # `planned`: from a plan that was not carried out (a dry run): said as what a run
    # would do, never as done.
    def note(self, text: str, planned: bool = False) -> None: ...

    def step_finished(self, title: str, seconds: float, hosts: Sequence[str], planned: int) -> None:
        if hosts or planned:
            self.changed.setdefault(title, []).extend(hosts)

    def step_failed(self, title: str, error: BaseException, seconds: float) -> None: ...
    # A workflow ran to its end (a command may run several: `upgrade --walk`).
    def workflow_finished(self, summary: dict[str, Any]) -> None: ...
    # The command ended, however it ended: told once, by the command line's error boundary.
    def command_finished(self, exit_code: int, error: str | None, log: str | None) -> None: ...
    def close(self) -> None: ...


class TextReporter(Reporter):
    def __init__(
        self, masker: Masker | None = None, verbose: int = 0, stream: TextIO | None = None
    ):
        super().__init__(masker)
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        self.verbose = verbose
        self._current: dict[str, tuple[str, float]] = {}
        self._step = ""
        self._heading = False
        self._step_started = 0.0
        self._lock = threading.Lock()
        self._live: Live | None = None

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self._step_started
        table.add_row(f"[bold]{self._step}[/]", f"{elapsed:5.1f}s")
        for host, (message, since) in sorted(self._current.items()):
            table.add_row(
                f"  {host}", f"{self.mask(message)[:90]} ({time.monotonic() - since:.0f}s)"
            )
        return table

    def run_started(self, workflow: str, cluster: str, hosts: Sequence[str], dry_run: bool) -> None:
        self.console.print(f"k8sboot {workflow}: cluster [bold]{cluster}[/], {len(hosts)} hosts")

    def step_started(self, title: str) -> None:
        with self._lock:
            self._step, self._step_started, self._current = title, time.monotonic(), {}
            self._heading = False
            if self.console.is_terminal and self._live is None:
                self._live = Live(
                    self._table(),
                    console=self.console,
                    refresh_per_second=4,
                    transient=True,
                    get_renderable=self._table,
                )
                self._live.start()

    def progress(self, host: str, message: str) -> None:
        # On a pipe (a CI log) there is no live table: each host's news is a line of its
        # own as it comes, under the step's name once.
        with self._lock:
            told = self._current.get(host, ("", 0.0))[0]
            self._current[host] = (message, time.monotonic())
            first = not self._heading
            self._heading = True
        if self.console.is_terminal or message == told:
            return
        if first and self._step:
            self.console.print(f"→ {self._step}", markup=False, highlight=False)
        self.console.print(f"  {host}: {self.mask(message)}", markup=False, highlight=False)

    def action_finished(
        self, step: str, action: Action, seconds: float, hosts: Sequence[str]
    ) -> None:
        if self.verbose:  # what was done and why: roles with their reasons, files, commands
            text = f"  {', '.join(action.hosts)}: {self.mask(action.describe())} ({seconds:.1f}s)"
            self.console.print(text, markup=False, highlight=False)

    def step_planned(self, title: str, actions: Sequence[Action], details: dict[int, str]) -> None:
        self._stop_live()
        if not actions:
            self.out.print(f"[green]=[/] {title}: converged")
            return
        self.out.print(f"[yellow]~[/] {title}:")
        for index, action in enumerate(actions):
            hosts = ", ".join(action.hosts)
            self.out.print(f"    {hosts}: {self.mask(action.describe())}", markup=False)
            if index in details:
                for line in self.mask(details[index]).splitlines():
                    self.out.print(f"        {line}", markup=False)

    def step_finished(self, title: str, seconds: float, hosts: Sequence[str], planned: int) -> None:
        super().step_finished(title, seconds, hosts, planned)
        self._stop_live()
        if planned:
            where = f" ({', '.join(dict.fromkeys(hosts))})" if hosts else ""
            self.console.print(f"[green]✓[/] {title}{where} [dim]{seconds:.1f}s[/]")
        elif self.verbose:
            self.console.print(f"[dim]= {title}: converged[/]")

    def step_failed(self, title: str, error: BaseException, seconds: float) -> None:
        self._stop_live()
        self.console.print(f"[red]✗ {title}[/] [dim]{seconds:.1f}s[/]")

    def checks(self, checks: Sequence[Check]) -> None:
        # One line per distinct finding, naming every host it holds for.
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for check in checks:
            if check.status != "ok" or self.verbose:
                key = (check.status, check.name, check.detail)
                grouped.setdefault(key, []).append(check.host)
        for (status, name, detail), hosts in grouped.items():
            where = ", ".join(h for h in hosts if h)
            where = f"{where}: " if where else ""
            line = escape(f"{where}{name}: {self.mask(detail)}")
            self.console.print(f"  {MARK[status]} {line}")

    def note(self, text: str, planned: bool = False) -> None:
        said = "note (if applied)" if planned else "note"
        self.console.print(f"  {said}: {self.mask(text)}")

    def workflow_finished(self, summary: dict[str, Any]) -> None:
        self._stop_live()
        seconds = summary.get("seconds", 0.0)
        if summary.get("dry_run"):
            pending = summary.get("pending", 0)
            self.out.print(
                f"plan: {pending} change(s) pending"
                if pending
                else "plan: nothing to change; the cluster is converged"
            )
            return
        if not self.changed:
            self.out.print(f"nothing to do: the cluster is converged ({seconds:.1f}s)")
        else:
            self.out.print(
                f"done in {seconds:.1f}s; changed: "
                + "; ".join(
                    f"{step} ({', '.join(dict.fromkeys(h)) or 'cluster'})"
                    for step, h in self.changed.items()
                )
            )
        for line in summary.get("lines", []):
            self.out.print(line, markup=False)

    def _stop_live(self) -> None:
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None

    def close(self) -> None:
        self._stop_live()


class JsonReporter(Reporter):
    """One JSON object per line on stdout, the last always `run_finished` (README,
    "Automation"): one reporter for the whole command, whatever workflows it runs."""

    def __init__(
        self,
        masker: Masker | None = None,
        stream: TextIO | None = None,
        started: float | None = None,
    ):
        super().__init__(masker, started)
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._step: str | None = None
        # What the workflows that ran said: unknown (null) until one starts or ends.
        self._dry_run: bool | None = None
        self._pending: int | None = None
        self._finished = False

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = self.mask(json.dumps(record, default=str))
        with self._lock:
            if self._finished:  # a thread still reporting after the end says nothing
                return
            self._finished = event == "run_finished"
            self.stream.write(line + "\n")
            self.stream.flush()

    def run_started(self, workflow: str, cluster: str, hosts: Sequence[str], dry_run: bool) -> None:
        self._dry_run = dry_run
        self._emit(
            "run_started", workflow=workflow, cluster=cluster, hosts=list(hosts), dry_run=dry_run
        )

    def step_started(self, title: str) -> None:
        self._step = title
        self._emit("step_started", step=title)

    def step_planned(self, title: str, actions: Sequence[Action], details: dict[int, str]) -> None:
        self._emit(
            "step_planned",
            step=title,
            changes=[
                {"hosts": list(a.hosts), "action": a.describe(), "detail": details.get(i)}
                for i, a in enumerate(actions)
            ],
        )

    def progress(self, host: str, message: str) -> None:
        self._emit("progress", step=self._step, host=host, message=message)

    def action_finished(
        self, step: str, action: Action, seconds: float, hosts: Sequence[str]
    ) -> None:
        self._emit(
            "action_finished",
            step=step,
            action=action.describe(),
            hosts=list(action.hosts),
            changed=list(hosts),
            duration=round(seconds, 3),
        )

    def step_finished(self, title: str, seconds: float, hosts: Sequence[str], planned: int) -> None:
        super().step_finished(title, seconds, hosts, planned)
        self._emit(
            "step_finished",
            step=title,
            duration=round(seconds, 3),
            changed=bool(planned),
            hosts=sorted(set(hosts)),
        )

    def step_failed(self, title: str, error: BaseException, seconds: float) -> None:
        self._emit("step_failed", step=title, duration=round(seconds, 3), error=str(error))

    def checks(self, checks: Sequence[Check]) -> None:
        for check in checks:
            self._emit(
                "check", host=check.host, check=check.name, status=check.status, detail=check.detail
            )

    def note(self, text: str, planned: bool = False) -> None:
        self._emit("note", message=text, planned=planned)

    def workflow_finished(self, summary: dict[str, Any]) -> None:
        self._dry_run = summary["dry_run"]
        self._pending = (self._pending or 0) + summary["pending"]

    def command_finished(self, exit_code: int, error: str | None, log: str | None) -> None:
        self._emit(
            "run_finished",
            ok=error is None,
            exit_code=exit_code,
            error=error,
            changed={k: sorted(set(v)) for k, v in self.changed.items()},
            seconds=round(time.monotonic() - self.started, 2),
            dry_run=self._dry_run,
            pending=self._pending,
            log=log,
        )
