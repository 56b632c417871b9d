#!/usr/bin/env python3
"""`k8sboot up` on lab machines, beside a plain Ansible-only run of the same roles.

    .venv/bin/python bench/up.py                  # 3 and 20 machines, medians of 3
    .venv/bin/python bench/up.py --sizes 3 --repeat 5 --json out.json

For each size N (1 control plane, N-1 workers, plain-LXC lab machines):
  first up        `k8sboot up` on fresh machines (node setup, init, joins, CNI, Ready)
  no-op re-run    `k8sboot up` again on the converged cluster
  add one worker  `k8sboot up` after one more machine joined the spec
and, on the same machines in the same run, the baseline: the same Ansible roles run by
ansible-runner with its default settings (no pipelining, no ControlPersist tuning, default
forks) over every host, as an Ansible-only installer does:
  ansible first   on fresh machines (node setup only; kubeadm is not Ansible here)
  ansible re-run  on the converged machines
Times are wall-clock seconds, medians over --repeat rounds, each round on fresh machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ansible_runner
import yaml

from k8sboot.cluster.node_setup import role_vars
from k8sboot.facts import HostFacts
from k8sboot.inventory import host_vars
from k8sboot.resources import data_dir
from k8sboot.spec import load_spec
from tests.e2e.labspec import write_lab_spec
from tests.lab import debs
from tests.lab.lab import Lab
from tests.lab.plugin import LAB_KUBE_VERSIONS, REPO_PORT

ROOT = Path(__file__).resolve().parents[1]


def cluster_file(lab: Lab, url: str, workdir: Path) -> Path:
    return write_lab_spec(lab, url, workdir / "cluster.yaml", name="bench")


def timed_up(spec: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "k8sboot", "up", "-f", str(spec), "-o", "json"],
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"k8sboot up failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def ansible_only(spec: Path, lab: Lab) -> float:
    """The same roles on every host through ansible-runner with default settings."""
    cluster = load_spec(spec).cluster
    hosts = {}
    for host in cluster.hosts:
        container = HostFacts(host.name, {"container": "lxc"})
        wanted = role_vars(cluster, host, container)
        merged = {
            "k8sboot_converge": list(wanted),
            "prepare_swap": False,
        }
        for values in wanted.values():
            merged |= values
        hosts[host.name] = {**host_vars(cluster, host), **merged}
    # The same known_hosts the lab pinned its machines' keys in.
    common = {
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab.known_hosts}",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    with tempfile.TemporaryDirectory() as private:
        inventory = Path(private) / "hosts.yml"
        inventory.write_text(yaml.safe_dump({"all": {"vars": common, "hosts": hosts}}))
        started = time.monotonic()
        runner = ansible_runner.run(
            private_data_dir=private,
            playbook=str(data_dir("playbooks") / "node.yml"),
            inventory=str(inventory),
            quiet=True,
            envvars={
                "ANSIBLE_ROLES_PATH": str(data_dir("playbooks") / "roles"),
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            },
        )
        seconds = time.monotonic() - started
    if runner.status != "successful":
        raise SystemExit(f"the Ansible-only run {runner.status}")
    return seconds


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def cycle(lab: Lab, size: int, url: str) -> dict[str, float]:
    """One round on fresh machines (and a fresh state directory: new machines have new
    host keys, which k8sboot rightly refuses against the old pins): every figure once."""
    figures: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-up-"))
    lab.up(1, size - 1, fresh=True)
    spec = cluster_file(lab, url, work)
    figures["ansible first"] = ansible_only(spec, lab)
    lab.up(1, size - 1, fresh=True)  # fresh machines again for k8sboot
    spec = cluster_file(lab, url, work)
    figures["first up"] = timed_up(spec)
    figures["no-op re-run"] = timed_up(spec)
    figures["ansible re-run"] = ansible_only(spec, lab)
    lab.up(1, size)
    spec = cluster_file(lab, url, work)
    figures["add one worker"] = timed_up(spec)
    return figures


def measure(size: int, repeat: int, index: int) -> dict[str, float]:
    """Medians over `repeat` rounds, each on fresh machines."""
    lab = Lab(index=index, backend="lxc")
    repo = Path(tempfile.mkdtemp(prefix="bench-apt-"))
    debs.build_repo(repo, list(LAB_KUBE_VERSIONS))
    rounds: list[dict[str, float]] = []
    try:
        lab.up(1, size - 1, fresh=True)
        server = debs.serve(repo, f"{lab.subnet}.1", REPO_PORT)
        url = f"http://{lab.subnet}.1:{REPO_PORT}/"
        for _ in range(repeat):
            rounds.append(cycle(lab, size, url))
            print(f"  {size} machines, one round: {json.dumps(rounds[-1])}", flush=True)
        server.shutdown()
        server.server_close()
    finally:
        lab.destroy()
    return {k: median([r[k] for r in rounds]) for k in rounds[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,20", help="machine counts (default 3,20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per repeated figure")
    parser.add_argument("--index", type=int, default=3, help="lab index (bridge k8sb<N>)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        results[size] = measure(size, args.repeat, args.index)
        print(f"{size} machines: {json.dumps(results[size])}", flush=True)
    keys = ["first up", "no-op re-run", "add one worker", "ansible first", "ansible re-run"]
    print(f"\n{'machines':>8} " + " ".join(f"{k:>15}" for k in keys))
    for size, figures in results.items():
        print(f"{size:>8} " + " ".join(f"{figures[k]:>15.1f}" for k in keys))
    for size, f in results.items():
        share = 100 * f["no-op re-run"] / f["first up"]
        speedup = f["ansible re-run"] / f["no-op re-run"]
        print(
            f"\n{size} machines: no-op = {share:.1f}% of first up (target <= 10%); "
            f"Ansible-only re-run / no-op = {speedup:.1f}x (target >= 5x)"
        )
    if len(results) > 1:
        small, large = results[min(results)], results[max(results)]
        first = large["first up"] / small["first up"]
        add = large["add one worker"] / small["add one worker"]
        print(
            f"{max(results)} vs {min(results)} machines: first up {first:.2f}x (target <= 2.5x); "
            f"add one worker {add:.2f}x (target 0.8-1.2x)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
