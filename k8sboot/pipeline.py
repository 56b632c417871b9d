"""Run a workflow: lock, connect and probe, preflight, then for each step plan and
(unless it is a dry run) execute. An empty plan everywhere means converged."""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from k8sboot.actions import Action, WriteFiles
from k8sboot.errors import MachineError, NoApiAnswer
from k8sboot.executor import Executor, Outcome, raise_first
from k8sboot.facts import ProbeRequest, probe
from k8sboot.lock import ClusterLock
from k8sboot.preflight import run_checks
from k8sboot.report import Reporter
from k8sboot.runlog import RunLog
from k8sboot.session import ExplainUnreachable, ask_api, gather, open_transport
from k8sboot.spec import Cluster
from k8sboot.state import StateDir
from k8sboot.step import Context, Step
from k8sboot.transport import ReadOnlyHosts, Transport, require_ssh_client


@dataclass
class Workflow:
    name: str
    steps: list[Step]
    preflight: bool = True
    needs_all_hosts: bool = True  # refuse to run when a host cannot be reached
    # Hosts taken out by `node remove` stay out (up): given the cluster, the state dir and
    # whether records may be forgotten (not on a dry run), the cluster without them and
    # what to tell about it.
    leaves_out: Callable[[Cluster, StateDir, bool], tuple[Cluster, list[str]]] | None = None
    # Checks of the operator's state dir before anything is probed (a restore in progress).
    guards: tuple[Callable[[StateDir], None], ...] = ()
    explain_unreachable: ExplainUnreachable | None = None


@dataclass
class RunResult:
    pending: int = 0  # actions planned (dry run) or carried out
    changed: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


def run(
    workflow: Workflow,
    cluster: Cluster,
    reporter: Reporter,
    *,
    dry_run: bool = False,
    wait_timeout: float = 600,
) -> RunResult:
    assert cluster.state_dir is not None
    if not dry_run:
        require_ssh_client()
    state = StateDir(cluster.state_dir).ensure()
    log = RunLog.for_run(state.logs, workflow.name, reporter.mask)
    started = time.monotonic()
    lock = None if dry_run else ClusterLock(state.lock, workflow.name)
    ctx: Context | None = None
    try:
        if lock:
            lock.acquire()
        left_out: list[str] = []
        if workflow.leaves_out:
            # Under the lock: forgetting records is a change of the state directory.
            cluster, left_out = workflow.leaves_out(cluster, state, not dry_run)
        for guard in workflow.guards:
            guard(state)
        hosts = [h.name for h in cluster.hosts]
        reporter.run_started(workflow.name, cluster.name, hosts, dry_run)
        with open_transport(cluster, state, log) as transport:
            request = ProbeRequest.for_(step.wants(cluster) for step in workflow.steps)
            explain = workflow.explain_unreachable
            facts = gather(cluster, transport, request, workflow.needs_all_hosts, reporter, explain)
            ctx = Context(
                cluster, state, ReadOnlyHosts(transport), log, facts, wait_timeout=wait_timeout
            )
            ctx.notes.extend(left_out)
            if explain and (hint := explain(cluster, facts)):
                reporter.note(hint)
            ask_api(ctx)
            if not ctx.api.answers:
                reporter.note(
                    f"the API on {ctx.api.host} does not answer ({ctx.api.reason}); the steps "
                    "that need it say so"
                )
            if workflow.preflight:
                _preflight(ctx, reporter)
            result = _steps(workflow, ctx, transport, request, reporter, dry_run)
        result.seconds = time.monotonic() - started
        _tell(ctx.notes, reporter, dry_run)
        reporter.workflow_finished(
            {"seconds": round(result.seconds, 2), "dry_run": dry_run, "pending": result.pending}
        )
        return result
    except BaseException:
        # What was done before the failure (where data was kept, what was recorded) is
        # told on failure too.
        _tell(ctx.notes if ctx is not None else [], reporter, dry_run)
        reporter.close()
        raise
    finally:
        log.close()
        if lock:
            lock.release()


def _tell(notes: list[str], reporter: Reporter, dry_run: bool) -> None:
    """The notes of the run. On a dry run every one comes from planning (nothing was
    carried out): each is told as what a run would do, never as done."""
    for note in dict.fromkeys(notes):  # a warning seen by planning and by a handler once
        reporter.note(note, planned=dry_run)


def _preflight(ctx: Context, reporter: Reporter) -> None:
    reporter.step_started("preflight")
    started = time.monotonic()
    checks = run_checks(ctx.cluster, ctx.facts)
    reporter.checks(checks)
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        error = MachineError(
            f"preflight failed: {failed[0]}"
            + (f" (and {len(failed) - 1} more above)" if len(failed) > 1 else "")
        )
        reporter.step_failed("preflight", error, time.monotonic() - started)
        raise error
    reporter.step_finished("preflight", time.monotonic() - started, [], 0)


def _steps(
    workflow: Workflow,
    ctx: Context,
    transport: Transport,
    request: ProbeRequest,
    reporter: Reporter,
    dry_run: bool,
) -> RunResult:
    result = RunResult()
    executor = Executor(ctx, transport, reporter.progress)
    unplanned: list[NoApiAnswer] = []
    for step in workflow.steps:
        reporter.step_started(step.title)
        started = time.monotonic()
        try:
            actions = step.plan(ctx)
        except NoApiAnswer as error:
            if not dry_run:
                raise
            # `plan` shows all it can know, then names what it cannot.
            reporter.step_failed(step.title, error, time.monotonic() - started)
            unplanned.append(error)
            continue
        result.pending += len(actions)
        if dry_run:
            reporter.step_planned(step.title, actions, _details(ctx, actions))
            continue
        changed: list[str] = []
        reprobe: list[str] = []
        try:
            for action, outcome, seconds in _execute(executor, actions, step.at_once(len(actions))):
                changed.extend(outcome.changed)
                reprobe.extend(outcome.reprobe)
                ctx.notes.extend(outcome.notes)
                if outcome.nodes is not None:
                    ctx.nodes = outcome.nodes
                reporter.action_finished(step.title, action, seconds, outcome.changed)
        except BaseException as error:
            reporter.step_failed(step.title, error, time.monotonic() - started)
            raise
        if reprobe:
            _look_again(ctx, transport, request, list(dict.fromkeys(reprobe)))
        reporter.step_finished(step.title, time.monotonic() - started, changed, len(actions))
        if changed:
            result.changed.setdefault(step.title, []).extend(changed)
    if unplanned:
        more = len(unplanned) - 1
        raise NoApiAnswer(
            f"{unplanned[0]}" + (f" (and {more} more step(s) that need the API)" if more else "")
        )
    return result


def _look_again(
    ctx: Context, transport: Transport, request: ProbeRequest, hosts: list[str]
) -> None:
    """The hosts an action changed, probed again (one round trip each, at once), and the
    API asked again: the steps after plan from what is there, not from a prediction."""
    again = probe(transport, hosts, request)
    ctx.facts.hosts.update(again.hosts)
    ctx.facts.errors.update(again.errors)
    ask_api(ctx)


def _execute(
    executor: Executor, actions: list[Action], at_once: int
) -> Iterator[tuple[Action, Outcome, float]]:
    """Each action with its outcome and seconds, as it finishes: in order (`at_once` 1),
    or up to `at_once` at the same time. A failure starts nothing more, and is raised once
    the actions running have ended (a host's write is not cut off half-way because another
    host failed)."""

    def timed(action: Action) -> tuple[Action, Outcome, float]:
        started = time.monotonic()
        return action, executor.execute(action), time.monotonic() - started

    if at_once < 2 or len(actions) < 2:
        yield from map(timed, actions)
        return
    failures: dict[str, BaseException] = {}
    waiting = iter(enumerate(actions))
    with ThreadPoolExecutor(max_workers=min(at_once, len(actions))) as pool:
        running: dict[Future, int] = {}

        def start() -> None:
            for index, action in waiting:
                running[pool.submit(timed, action)] = index
                if len(running) >= at_once:
                    return

        start()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                try:
                    yield future.result()
                except Exception as error:
                    failures[str(index)] = error
            if not failures:
                start()
    raise_first(failures)


def _details(ctx: Context, actions: list[Action]) -> dict[int, str]:
    """For `plan`: the diff of each file that would be written (secret ones masked)."""
    details = {}
    for index, action in enumerate(actions):
        if not isinstance(action, WriteFiles):
            continue
        connection = ctx.view[action.host]
        diffs = []
        for file in action.files:
            if file.secret:
                diffs.append(f"{file.path}: (holds secrets; not shown)")
                continue
            current = connection.read_file(str(file.path)) or b""
            diff = difflib.unified_diff(
                current.decode("utf-8", "replace").splitlines(),
                file.content.splitlines(),
                f"{file.path} (on {action.host})",
                f"{file.path} (rendered)",
                lineterm="",
            )
            diffs.append("\n".join(diff))
        details[index] = "\n".join(diffs)
    return details
