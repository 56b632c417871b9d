#!/usr/bin/env python3
"""`k8sboot health` on a healthy 5-machine lab cluster (3 control planes behind kube-vip,
2 workers): its parallel run beside the very same checks run one after another.

    .venv/bin/python bench/health.py                     # lab 9, medians of 7
    .venv/bin/python bench/health.py --index 4 --repeat 9 --json out.json --keep

Brings the lab and the cluster up with k8sboot first (minutes), then for each round, in
alternating order: the checks in parallel (what `k8sboot health` does) and the same checks
one after another; each run opens its own SSH connections, as a fresh command does. Also
times the whole `k8sboot health` command (process start, spec loading, output). Figures
are wall-clock seconds, medians over the rounds. The lab is destroyed afterwards unless
--keep.
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
from k8sboot.health.session import session
from k8sboot.health.verdicts import healthy, judge
from k8sboot.spec import load_spec
from k8sboot.transport import _parsed_key
from tests.e2e.labspec import write_lab_spec
from tests.lab import debs
from tests.lab.lab import Lab
from tests.lab.plugin import LAB_KUBE_VERSIONS, REPO_PORT


def timed_checks(spec: Path, parallel: bool) -> float:
    cluster = load_spec(spec).cluster
    _parsed_key.cache_clear()  # a fresh command parses the SSH keys again
    started = time.monotonic()
    with session(cluster, "health-bench") as transport:
        seen = observe(cluster, transport, parallel=parallel)
    verdicts = judge(cluster, seen)
    seconds = time.monotonic() - started
    if not healthy(verdicts):
        bad = [v for v in verdicts if v.status == "fail"]
        raise SystemExit(f"the cluster is not healthy: {bad}")
    return seconds


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
        parallel, sequential, command = [], [], []
        for round_ in range(args.repeat):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for mode in order:
                (parallel if mode else sequential).append(timed_checks(spec, mode))
            command.append(timed_command(spec))
        figures = {
            "machines": len(lab.machines),
            "rounds": args.repeat,
            "parallel_s": round(statistics.median(parallel), 2),
            "sequential_s": round(statistics.median(sequential), 2),
            "speedup": round(statistics.median(sequential) / statistics.median(parallel), 2),
            "command_s": round(statistics.median(command), 2),
            "all": {"parallel": parallel, "sequential": sequential, "command": command},
        }
        print(f"health checks on {figures['machines']} machines, medians of {args.repeat}:")
        print(f"  parallel (k8sboot health)  {figures['parallel_s']:6.2f} s")
        print(f"  one after another          {figures['sequential_s']:6.2f} s")
        print(f"  speed-up                   {figures['speedup']:6.2f}x")
        print(f"  whole command, parallel    {figures['command_s']:6.2f} s")
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
