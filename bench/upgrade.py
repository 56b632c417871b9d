#!/usr/bin/env python3
"""`k8sboot upgrade` of an HA lab cluster, beside a plain script of the same commands.

    .venv/bin/python bench/upgrade.py                 # 3 control planes, 4 workers, medians of 3
    .venv/bin/python bench/upgrade.py --repeat 1 --json out.json

Each round brings fresh machines up at FROM with `k8sboot up`, then upgrades them to TO,
three times over (a fresh cluster each time):
  baseline      the kubeadm guide's commands, one node after another over SSH, by a plain
                script: kubeadm package, `kubeadm upgrade apply|node`, `kubectl drain`,
                kubelet and kubectl packages, kubelet restart, Ready, uncordon
  upgrade       `k8sboot upgrade` (its checks, backup, etcd leadership and VIP moves too),
                with the API asked through the virtual IP every 100 ms and a Deployment
                under a PodDisruptionBudget watched
  max-unav. 2   `k8sboot upgrade --max-unavailable 2`
  no-op         `k8sboot upgrade` once more on the upgraded cluster
Times are wall-clock seconds, medians over --repeat rounds; per node = the time from a
node's first action to its last, from k8sboot's events.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from tests.e2e.apiwatch import Watch
from tests.e2e.conftest import K8sboot, events
from tests.e2e.labspec import per_minor, write_lab_spec
from tests.lab import debs
from tests.lab.lab import Lab
from tests.lab.plugin import LAB_KUBE_VERSIONS, REPO_PORT
from tests.lab.standins import workloads

FROM, TO = "1.31.5", "1.32.3"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


def fresh_cluster(lab: Lab, url: str, workers: int) -> K8sboot:
    lab.up(3, workers, fresh=True)
    work = Path(tempfile.mkdtemp(prefix="bench-upgrade-"))
    cluster = K8sboot(work, lab)
    write_lab_spec(lab, url, cluster.spec, name="lab", version=FROM)
    run(cluster, "up")
    path = work / "web.yaml"
    path.write_text(
        workloads.to_yaml(
            [workloads.deployment("web", 3), workloads.pdb("web", "web", min_available=2)]
        )
    )
    cluster.kubectl("apply", "-f", str(path))
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=180s")
    spec = yaml.safe_load(cluster.spec.read_text())
    spec["kubernetes"] = {"version": TO}
    cluster.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    return cluster


def run(cluster: K8sboot, *args: str) -> list[dict[str, Any]]:
    done = cluster.run(*args, "-o", "json", check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(
            f"k8sboot {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        )
    return events(done.stdout)


def step_seconds(run_events: list[dict[str, Any]], title: str) -> float:
    return sum(
        e["duration"] for e in run_events if e["event"] == "step_finished" and e["step"] == title
    )


def per_node(run_events: list[dict[str, Any]]) -> list[float]:
    return [
        e["duration"]
        for e in run_events
        if e["event"] == "action_finished" and e["action"].startswith("upgrade ")
    ]


def where_the_time_went(run_events: list[dict[str, Any]], top: int = 12) -> str:
    """Each step's seconds, then the longest stretches: from a progress line to the next
    event, summed by what the line says (numbers dropped). Meant for one node at a time,
    where one line follows another; with nodes at once, stretches overlap and are cut."""
    lines = [
        f"  {e['step']:>36}: {e['duration']:.1f}s"
        for e in run_events
        if e["event"] == "step_finished" and e["duration"] >= 0.5
    ]
    stretches: dict[str, float] = {}
    last: tuple[str, float] | None = None
    for e in run_events:
        if last is not None:
            said, since = last
            stretches[said] = stretches.get(said, 0.0) + e["time"] - since
            last = None
        if e["event"] == "progress":
            said = " ".join(w for w in e["message"].split()[:3] if not w[:1].isdigit())
            last = (said, e["time"])
    longest = sorted(stretches.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(
        ["where the time went (steps):", *lines, "progress lines, summed:"]
        + [f"  {said[:60]:>60}: {seconds:.1f}s" for said, seconds in longest]
    )


def baseline(cluster: K8sboot, url: str, workers: int) -> float:
    """The upgrade guide's commands for every node in turn, nothing else."""
    lab = cluster.lab
    repository = per_minor(url).replace("{minor}", TO.rsplit(".", 1)[0])
    sources = f"Types: deb\\nURIs: {repository}\\nSuites: /\\nTrusted: yes\\n"
    install = (
        f"printf '{sources}' | sudo tee /etc/apt/sources.list.d/kubernetes.sources >/dev/null && "
        "sudo apt-get update -q -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/kubernetes.sources "
        "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >/dev/null && "
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-change-held-packages "
        "{packages} >/dev/null && sudo apt-mark hold {names} >/dev/null"
    )
    names = ["cp1", "cp2", "cp3", *(f"w{i}" for i in range(1, workers + 1))]
    started = time.monotonic()
    for name in names:
        via = "cp2" if name == "cp1" else "cp1"
        lab.ssh(name, install.format(packages=f"kubeadm={TO}-*", names="kubeadm"))
        upgrade = f"kubeadm upgrade apply v{TO} -y" if name == "cp1" else "kubeadm upgrade node"
        lab.ssh(name, f"sudo {upgrade} </dev/null >/dev/null")
        lab.ssh(via, f"sudo {KUBECTL} drain {name} --ignore-daemonsets --timeout=600s >/dev/null")
        lab.ssh(
            name,
            install.format(packages=f"kubelet={TO}-* kubectl={TO}-*", names="kubelet kubectl"),
        )
        lab.ssh(name, "sudo systemctl daemon-reload && sudo systemctl restart kubelet")
        ready = (
            f"sudo {KUBECTL} get node {name} -o jsonpath='{{.status.nodeInfo.kubeletVersion}} "
            '{.status.conditions[?(@.type=="Ready")].status}\''
        )
        deadline = time.monotonic() + 600
        while lab.ssh(via, ready, check=False).stdout.strip() != f"v{TO} True":
            if time.monotonic() > deadline:
                raise SystemExit(f"baseline: {name} not Ready at v{TO}")
            time.sleep(1)
        lab.ssh(via, f"sudo {KUBECTL} uncordon {name} >/dev/null")
    return time.monotonic() - started


def one_round(lab: Lab, url: str, workers: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    cluster = fresh_cluster(lab, url, workers)
    figures["baseline"] = baseline(cluster, url, workers)

    cluster = fresh_cluster(lab, url, workers)
    with Watch(cluster, "web") as watch:
        started = time.monotonic()
        upgraded = run(cluster, "upgrade")
        figures["upgrade"] = time.monotonic() - started
    print(where_the_time_went(upgraded), flush=True)
    figures["per node (median)"] = statistics.median(per_node(upgraded))
    figures["workers step"] = step_seconds(upgraded, "upgrade workers")
    figures["API requests failed"] = len(watch.failed)
    figures["API longest gap"] = watch.longest_gap
    figures["fewest available (minAvailable 2)"] = float(watch.fewest_available or 0)
    started = time.monotonic()
    run(cluster, "upgrade")
    figures["no-op"] = time.monotonic() - started

    cluster = fresh_cluster(lab, url, workers)
    started = time.monotonic()
    batched = run(cluster, "upgrade", "--max-unavailable", "2")
    figures["max-unavailable 2"] = time.monotonic() - started
    figures["workers step, max-unavailable 2"] = step_seconds(batched, "upgrade workers")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (fresh machines each)")
    parser.add_argument("--index", type=int, default=3, help="lab index (bridge k8sb<N>)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    lab = Lab(index=args.index, backend="lxc")
    repo = Path(tempfile.mkdtemp(prefix="bench-apt-"))
    debs.build_repo(repo, list(LAB_KUBE_VERSIONS))
    rounds = []
    try:
        lab.up(3, args.workers, fresh=True)
        server = debs.serve(repo, f"{lab.subnet}.1", REPO_PORT)
        url = f"http://{lab.subnet}.1:{REPO_PORT}/"
        for _ in range(args.repeat):
            rounds.append(one_round(lab, url, args.workers))
            print(f"one round: {json.dumps(rounds[-1])}", flush=True)
        server.shutdown()
        server.server_close()
    finally:
        lab.destroy()
    medians = {k: round(statistics.median(r[k] for r in rounds), 2) for k in rounds[0]}
    print(f"\n3 control planes + {args.workers} workers, {FROM} -> {TO}, medians of {args.repeat}:")
    for key, value in medians.items():
        print(f"  {key:>36}: {value}")
    print(
        f"\nk8sboot upgrade / baseline = {medians['upgrade'] / medians['baseline']:.2f}x "
        "(target <= 1.2x); --max-unavailable 2 / one at a time = "
        f"{medians['max-unavailable 2'] / medians['upgrade']:.2f}x (the workers' step: "
        f"{medians['workers step, max-unavailable 2'] / medians['workers step']:.2f}x); no-op = "
        f"{100 * medians['no-op'] / medians['upgrade']:.1f}% of the upgrade (target <= 10%); "
        f"API requests failed: {medians['API requests failed']:.0f} (target 0)"
    )
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
