"""Several processes calling ClusterLock.acquire() at the same instant, round after round.

A module of its own so that spawned workers import only the lock, not the test module.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

from k8sboot.lock import ClusterLock, Locked

TIMEOUT = 20.0


def _contend(path: Path, rounds: int, start, tried, released, results) -> None:
    for _ in range(rounds):
        lock = ClusterLock(path, "up")
        start.wait()
        try:
            lock.acquire()
            held = True
        except Locked:
            held = False
        results.put(held)
        tried.wait()  # every contender has tried before a holder lets go
        if held:
            lock.release()
        released.wait()


def holders_per_round(
    path: Path, processes: int, rounds: int, before_round: Callable[[], None] = lambda: None
) -> list[int]:
    """How many processes held the lock in each round; before_round runs before each start."""
    ctx = multiprocessing.get_context("spawn")
    start, tried, released = (ctx.Barrier(processes + 1, timeout=TIMEOUT) for _ in range(3))
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=_contend, args=(path, rounds, start, tried, released, results), daemon=True
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    counts = []
    try:
        for _ in range(rounds):
            before_round()
            start.wait()
            tried.wait()
            counts.append(sum(results.get(timeout=TIMEOUT) for _ in range(processes)))
            released.wait()
        for worker in workers:
            worker.join(TIMEOUT)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    return counts


def write_stale_record(path: Path) -> None:
    """The lock of a run that crashed on another machine long ago."""
    long_ago = time.time() - 999
    record = {
        "holder": "x@y",
        "host": "elsewhere",
        "pid": 1,
        "command": "up",
        "started": long_ago,
        "heartbeat": long_ago,
    }
    path.write_text(json.dumps(record))
