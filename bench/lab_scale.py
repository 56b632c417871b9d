#!/usr/bin/env python3
"""How the lab scales on this machine: box build, bring-up of 3 and of 20 machines, memory,
disk and destroy time.

    sudo .venv/bin/python bench/lab_scale.py                     # vagrant backend, 20 machines
    sudo .venv/bin/python bench/lab_scale.py --backend lxc       # the lighter path
    sudo .venv/bin/python bench/lab_scale.py --rebuild-box --repeat 3 --json out.json

Times are wall-clock seconds. "vagrant up" is the provider command alone; "ready" adds
reading `vagrant ssh-config` and waiting until every machine answers over SSH. Memory is
the PSS of every process in the lab's containers (plus their LXC monitors), the machines'
memory cgroups (which also count page cache) and the host's MemAvailable delta.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lab.box import ensure_box, last_build
from tests.lab.lab import LXC_PATH, Lab


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def lab_pids(lab: Lab) -> list[int]:
    marker = f"/lxc.payload.{lab.name}-"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cgroups = Path(f"/proc/{entry}/cgroup").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cgroups or cmdline.startswith(
            f"[lxc monitor] {LXC_PATH} {lab.name}-".encode()
        ):
            pids.append(int(entry))
    return pids


def pss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def cgroup_memory(lab: Lab) -> tuple[int, int]:
    """(usage incl. page cache, rss) summed over the lab's memory cgroups (cgroup v1 or v2)."""
    usage = rss = 0
    v1 = Path("/sys/fs/cgroup/memory")
    root = v1 if v1.is_dir() else Path("/sys/fs/cgroup")
    for cg in root.glob(f"lxc.payload.{lab.name}-*"):
        if (cg / "memory.usage_in_bytes").exists():
            usage += int((cg / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (cg / "memory.stat").read_text().splitlines())
            rss += int(stat.get("total_rss", 0))
        elif (cg / "memory.current").exists():
            usage += int((cg / "memory.current").read_text())
            stat = dict(line.split() for line in (cg / "memory.stat").read_text().splitlines())
            rss += int(stat.get("anon", 0))
    return usage, rss


def disk_used(lab: Lab) -> int:
    dirs = [str(p) for p in LXC_PATH.glob(f"{lab.name}-*")]
    if not dirs:
        return 0
    out = subprocess.run(["du", "-sxcb", *dirs], capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def median(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    mid, low, high = statistics.median(values), min(values), max(values)
    return f"{mid:.1f} (min {low:.1f}, max {high:.1f}, n={len(values)})"


def bring_up(lab: Lab, n: int) -> dict[str, float]:
    workers = max(0, n - 1)
    free_before = mem_available()
    t0 = time.monotonic()
    lab.up(control_planes=1, workers=workers)
    wall = time.monotonic() - t0
    t1 = time.monotonic()
    lab.ssh_all("true")
    ssh_all = time.monotonic() - t1
    time.sleep(5)  # let first-boot work (host keys, journald) settle
    pids = lab_pids(lab)
    usage, rss = cgroup_memory(lab)
    return {
        "machines": len(lab.machines),
        "vagrant_up": lab.timings["up"],
        "ready": lab.timings["ready"],
        "wall": wall,
        "ssh_all_warm": ssh_all,
        "pss": pss(pids),
        "cgroup_usage": usage,
        "cgroup_rss": rss,
        "host_mem_delta": free_before - mem_available(),
        "disk": disk_used(lab),
    }


def tear_down(lab: Lab) -> float:
    t0 = time.monotonic()
    lab.destroy()
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=("vagrant", "lxc"), default="vagrant")
    ap.add_argument("--machines", type=int, default=20, help="size of the large lab (20)")
    ap.add_argument("--small", type=int, default=3, help="size of the small lab (3)")
    ap.add_argument("--repeat", type=int, default=3, help="small-lab rounds (median; 3)")
    ap.add_argument("--repeat-large", type=int, default=1, help="large-lab rounds (1)")
    ap.add_argument("--rebuild-box", action="store_true", help="rebuild the box to time it")
    ap.add_argument(
        "--index",
        type=int,
        default=int(os.environ.get("K8SBOOT_LAB_INDEX", "9")),
        help="lab index (bridge k8sb<index>, 10.213.<index>.0/24; default 9)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("must run as root (LXC containers, bridges)")

    lab = Lab(index=args.index, backend=args.backend)
    lab.purge()

    t0 = time.monotonic()
    box = ensure_box(rebuild=args.rebuild_box)
    box_seconds = time.monotonic() - t0
    build = last_build(box.hash) or {}

    small: list[dict[str, float]] = []
    small_destroy: list[float] = []
    for _ in range(args.repeat):
        small.append(bring_up(lab, args.small))
        small_destroy.append(tear_down(lab))
    large: list[dict[str, float]] = []
    large_destroy: list[float] = []
    for _ in range(args.repeat_large):
        large.append(bring_up(lab, args.machines))
        large_destroy.append(tear_down(lab))

    def col(rows: list[dict[str, float]], key: str) -> list[float]:
        return [r[key] for r in rows]

    print(f"lab scale, backend={args.backend}, {os.cpu_count()} CPUs, box {box.name}")
    if box.cached:
        print(
            f"  box build (cached now; last build): {build.get('seconds', float('nan')):.1f} s "
            f"{ {k: round(v, 1) for k, v in build.get('phases', {}).items()} }"
        )
    else:
        print(
            f"  box build (not cached): {box_seconds:.1f} s "
            f"{ {k: round(v, 1) for k, v in build.get('phases', {}).items()} }"
        )
    for label, rows, destroys in (
        (f"{args.small} machines", small, small_destroy),
        (f"{args.machines} machines", large, large_destroy),
    ):
        if not rows:
            continue
        cmd = "vagrant up" if args.backend == "vagrant" else "lxc start"
        print(f"  {label}:")
        print(f"    {cmd:<20} {median(col(rows, 'vagrant_up'))} s")
        print(f"    {'ready (SSH on all)':<20} {median(col(rows, 'ready'))} s")
        print(f"    {'ssh all, warm':<20} {median(col(rows, 'ssh_all_warm'))} s")
        print(f"    {'destroy':<20} {median(destroys)} s")
        last = rows[-1]
        print(
            f"    {'memory PSS':<20} {mib(int(last['pss']))} "
            f"({mib(int(last['pss'] / last['machines']))} per machine)"
        )
        print(
            f"    {'memory cgroups':<20} {mib(int(last['cgroup_usage']))} incl. page cache, "
            f"{mib(int(last['cgroup_rss']))} rss"
        )
        print(f"    {'host free-mem delta':<20} {mib(int(last['host_mem_delta']))}")
        print(
            f"    {'disk':<20} {mib(int(last['disk']))} "
            f"({mib(int(last['disk'] / last['machines']))} per machine)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "backend": args.backend,
                    "box": box.name,
                    "box_cached": box.cached,
                    "box_seconds": box_seconds,
                    "box_build": build,
                    "small": small,
                    "small_destroy": small_destroy,
                    "large": large,
                    "large_destroy": large_destroy,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
