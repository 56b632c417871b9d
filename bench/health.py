#!/usr/bin/env python3
"""`k8sboot health` on a healthy 5-machine lab cluster (3 control planes behind kube-vip,
2 workers): its parallel run beside the very same checks run one after another.

    .venv/bin/python bench/health.py                     # lab 9, medians of 7
    .venv/bin/python bench/health.py --index 4 --repeat 9 --json out.json --keep

Brings the lab and the cluster up with k8sboot first (minutes), then for each round, in
alternating order: the checks in parallel (what `k8sboot health` does) and the same checks
one after another; each run opens its own SSH connections, as a fresh command does. Also
times the whole `k8sboot health` command (process start, spec loading, output). Figures
are wall-clock seconds, medians over the rounds, and the CPU time the whole machine spent
meanwhile (its lab machines are containers on it, sharing its cores). Less what the idle
lab uses by itself, that CPU time over the cores the idle lab leaves is the fastest any
parallel run of these checks could be here. The lab is destroyed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k8sboot.health.observe import observe
from k8sboot.health.verdicts import healthy, judge
from k8sboot.session import read_only
from k8sboot.spec import load_spec
from k8sboot.transport import _parsed_key
from tests.e2e.labspec import write_lab_spec
from tests.lab import debs
from tests.lab.lab import Lab
from tests.lab.plugin import LAB_KUBE_VERSIONS, REPO_PORT


def busy_seconds() -> float:
    """CPU time spent so far by everything on this machine (the lab's machines are
    containers on it), in core-seconds, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def idle_cores(seconds: float = 10.0) -> float:
    """Cores the healthy lab keeps busy by itself (its control planes, etcd, kubelets)."""
    before = busy_seconds()
    time.sleep(seconds)
    return (busy_seconds() - before) / seconds


def timed_checks(spec: Path, parallel: bool) -> tuple[float, float]:
    """Wall-clock seconds and the machine's busy core-seconds of one run of the checks."""
    cluster = load_spec(spec).cluster
    _parsed_key.cache_clear()  # a fresh command parses the SSH keys again
    started, busy = time.monotonic(), busy_seconds()
    with read_only(cluster, "health-bench") as transport:
        seen = observe(cluster, transport, parallel=parallel)
    verdicts = judge(cluster, seen)
    seconds, busy = time.monotonic() - started, busy_seconds() - busy
    if not healthy(verdicts):
        bad = [v for v in verdicts if v.status == "fail"]
        raise SystemExit(f"the cluster is not healthy: {bad}")
    return seconds, busy


def timed_command(spec: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "k8sboot", "health", "-f", str(spec), "-o", "json"],
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"k8sboot health failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def bring_up(lab: Lab, workdir: Path) -> tuple[Path, object]:
    lab.up(3, 2)
    repo = debs.build_repo(workdir / "apt", list(LAB_KUBE_VERSIONS))
    address = f"{lab.subnet}.1"
    server = debs.serve(repo, address, REPO_PORT)
    spec = write_lab_spec(lab, f"http://{address}:{REPO_PORT}/", workdir / "cluster.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "k8sboot", "up", "-f", str(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        server.shutdown()
        raise SystemExit(f"k8sboot up failed:\n{done.stderr[-3000:]}")
    return spec, server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--index", type=int, default=int(os.environ.get("K8SBOOT_BENCH_LAB_INDEX", "9"))
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the lab afterwards")
    args = parser.parse_args()

    lab = Lab(index=args.index)
    workdir = Path(tempfile.mkdtemp(prefix="k8sboot-bench-health-"))
    server = None
    try:
        spec, server = bring_up(lab, workdir)
        timed_checks(spec, True)  # warm-up: caches on both sides, host keys pinned
        idle = idle_cores()
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        command = []
        for round_ in range(args.repeat):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for mode in order:
                runs[mode].append(timed_checks(spec, mode))
            command.append(timed_command(spec))
        cores = os.cpu_count() or 1

        def median(mode: bool, index: int) -> float:
            return statistics.median(run[index] for run in runs[mode])

        parallel_s, sequential_s = median(True, 0), median(False, 0)
        # The checks' own CPU work: what the machine did during a parallel run less what
        # the idle lab does anyway. Spread over the cores the idle lab leaves, nothing
        # waited for, that work takes `fastest` seconds: no parallel run here beats it.
        work = median(True, 1) - idle * parallel_s
        fastest = work / (cores - idle)
        figures = {
            "machines": len(lab.machines),
            "rounds": args.repeat,
            "cores": cores,
            "parallel_s": round(parallel_s, 2),
            "sequential_s": round(sequential_s, 2),
            "speedup": round(sequential_s / parallel_s, 2),
            "command_s": round(statistics.median(command), 2),
            "idle_lab_cores": round(idle, 2),
            "parallel_busy_core_s": round(median(True, 1), 2),
            "sequential_busy_core_s": round(median(False, 1), 2),
            "checks_core_s": round(work, 2),
            "fastest_parallel_s": round(fastest, 2),
            "speedup_bound": round(sequential_s / fastest, 2),
            "all": {"parallel": runs[True], "sequential": runs[False], "command": command},
        }
        print(f"health checks on {figures['machines']} machines, medians of {args.repeat}:")
        print(f"  parallel (k8sboot health)  {parallel_s:6.2f} s")
        print(f"  one after another          {sequential_s:6.2f} s")
        print(f"  speed-up                   {figures['speedup']:6.2f}x")
        print(f"  whole command, parallel    {figures['command_s']:6.2f} s")
        print(
            f"  CPU busy on this machine   {figures['parallel_busy_core_s']:6.2f} / "
            f"{figures['sequential_busy_core_s']:.2f} core-s (parallel / one after another)"
        )
        print(
            f"  the idle lab alone uses {idle:.2f} of {cores} cores; the checks' own "
            f"{work:.2f} core-s on the rest take at least {fastest:.2f} s: a speed-up of at "
            f"most {figures['speedup_bound']:.2f}x here"
        )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
        if not args.keep:
            lab.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
