#!/usr/bin/env python3
"""`k8sboot health` and a no-op `k8sboot up`, by this checkout and by a baseline one (by
default the commit before commands went over Fabric), on the same lab cluster in the same
run: 3 control planes behind kube-vip, 2 workers.

    .venv/bin/python bench/transport.py                   # lab 3, medians of 7
    .venv/bin/python bench/transport.py --baseline REV --repeat 9 --json out.json

Brings the cluster up with this checkout first (minutes); the baseline is `git archive`d into
a temporary directory and run from there with the same cluster file and state directory.
Each round runs both checkouts in alternating order; each run is a fresh `python -m
k8sboot` process, as an operator's command is. Figures are wall-clock seconds, medians.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from health import bring_up  # bench/health.py: the same cluster, brought up the same way

from tests.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[1]
# The last commit whose commands went over plain Paramiko (main before the h-ssh merge).
BEFORE_FABRIC = "9f574c8^1"


def checkout(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "k8sboot", "templates", "playbooks"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def timed(code: Path, spec: Path, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "k8sboot", *args, "-f", str(spec), "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=spec.parent,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{code}: k8sboot {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    if args[0] == "up" and '"changed": {}' not in done.stdout.splitlines()[-1]:
        raise SystemExit(f"{code}: k8sboot up was not a no-op:\n{done.stdout[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BEFORE_FABRIC, help="git revision to compare with")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--index", type=int, default=3, help="lab index (bridge k8sb<N>)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    lab = Lab(index=args.index)
    workdir = Path(tempfile.mkdtemp(prefix="k8sboot-bench-transport-"))
    (workdir / "baseline").mkdir()
    codes = {"baseline": checkout(args.baseline, workdir / "baseline"), "this": ROOT}
    server = None
    try:
        spec, server = bring_up(lab, workdir)
        for code in codes.values():  # warm-up: caches, host keys pinned
            timed(code, spec, "health")
        runs: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.repeat):
            order = list(codes) if round_ % 2 == 0 else list(reversed(codes))
            for command in ("health", "up"):
                for name in order:
                    runs.setdefault((command, name), []).append(timed(codes[name], spec, command))
    finally:
        if server is not None:
            server.shutdown()
        lab.destroy()
    medians = {f"{c} {n}": round(statistics.median(v), 3) for (c, n), v in runs.items()}
    print(f"\n3 control planes + 2 workers, medians of {args.repeat} (seconds):")
    for key, value in medians.items():
        print(f"  {key:>16}: {value}")
    for command in ("health", "up"):
        ratio = medians[f"{command} this"] / medians[f"{command} baseline"]
        print(f"  {command}: this checkout / baseline {args.baseline} = {ratio:.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"runs": {f"{c} {n}": v for (c, n), v in runs.items()}, "medians": medians},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
