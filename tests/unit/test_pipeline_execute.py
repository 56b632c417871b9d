"""How a step's actions are carried out: in order, or at the same time for hosts apart
(all of them, or a few at a time)."""

from __future__ import annotations

import threading

import pytest

from k8sboot.actions import WriteFiles
from k8sboot.cluster.containerd import ContainerdConfig
from k8sboot.errors import MachineError
from k8sboot.executor import Outcome
from k8sboot.pipeline import _execute

ACTIONS = [WriteFiles(f"w{i}", (), restart="containerd") for i in range(4)]


class FakeExecutor:
    """Each action waits until all of them have started (or gives up after 2 s)."""

    def __init__(self, fail: str | None = None):
        self.started = threading.Barrier(len(ACTIONS), timeout=2)
        self.fail = fail
        self.together = []
        self.finished = []

    def execute(self, action: WriteFiles) -> Outcome:
        try:
            self.started.wait()
            self.together.append(action.host)
        except threading.BrokenBarrierError:
            pass
        self.finished.append(action.host)
        if action.host == self.fail:
            raise MachineError(f"{action.host}: systemctl restart containerd failed")
        return Outcome((action.host,))


def test_actions_on_hosts_apart_run_at_the_same_time() -> None:
    executor = FakeExecutor()
    done = list(_execute(executor, ACTIONS, at_once=4))
    assert sorted(executor.together) == ["w0", "w1", "w2", "w3"]
    assert sorted(outcome.changed[0] for _, outcome, _ in done) == ["w0", "w1", "w2", "w3"]
    assert ContainerdConfig.hosts_apart


def test_a_failure_is_raised_once_every_other_action_has_ended() -> None:
    executor = FakeExecutor(fail="w1")
    reported = []
    with pytest.raises(MachineError, match="w1: systemctl restart containerd failed"):
        for _, outcome, _ in _execute(executor, ACTIONS, at_once=4):
            reported.extend(outcome.changed)
    assert sorted(executor.finished) == ["w0", "w1", "w2", "w3"]
    assert sorted(reported) == ["w0", "w2", "w3"]


def test_other_steps_keep_their_order() -> None:
    executor = FakeExecutor()
    executor.started = threading.Barrier(1)
    done = [outcome.changed[0] for _, outcome, _ in _execute(executor, ACTIONS, at_once=1)]
    assert done == executor.finished == ["w0", "w1", "w2", "w3"]


class Counting:
    """Counts the actions running at once; each takes a little while."""

    def __init__(self, fail: str | None = None):
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.fail = fail

    def execute(self, action: WriteFiles) -> Outcome:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(action.host)
        threading.Event().wait(0.05)
        with self.lock:
            self.running -= 1
        if action.host == self.fail:
            raise MachineError(f"{action.host}: failed")
        return Outcome((action.host,))


def test_a_few_at_a_time_never_more_and_a_failure_starts_no_more() -> None:
    executor = Counting()
    done = list(_execute(executor, ACTIONS, at_once=2))
    assert executor.most == 2 and len(done) == 4
    failing = FailsFirst()
    with pytest.raises(MachineError, match="w0: failed"):
        list(_execute(failing, ACTIONS, at_once=2))
    assert failing.started == ["w0", "w1"]  # w2 and w3 never started


class FailsFirst(Counting):
    """w0 fails at once; w1 ends well after it, so that whatever the machine's load the
    failure is seen before a free slot could start w2."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = threading.Event()

    def execute(self, action: WriteFiles) -> Outcome:
        with self.lock:
            self.started.append(action.host)
        if action.host == "w0":
            self.failed.set()
            raise MachineError("w0: failed")
        self.failed.wait(5)
        threading.Event().wait(1.0)
        return Outcome((action.host,))
