"""The README's first command (`.ci/demo`): the main job on this machine, as a user runs it.

Three lab machines made by `vagrant up` with the LXC provider (lab 0), the stand-in
Kubernetes packages served on the lab's bridge, then `k8sboot up --vagrant` with
inventories/lab/cluster.yaml, the nodes, a health summary and a re-run that changes
nothing. The machines stay up afterwards; `python -m tests.lab down` removes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.lab import debs, etcd_release
from tests.lab.lab import REPO_ROOT, Lab
from tests.lab.plugin import LAB_KUBE_VERSIONS, REPO_PORT

SPEC = REPO_ROOT / "inventories" / "lab" / "cluster.yaml"
KUBECTLS = ("/usr/lib/google-cloud-sdk/bin/kubectl.1.33", "/usr/bin/kubectl")


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _k8sboot(lab: Lab, *args: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "k8sboot", *args, "-f", str(SPEC), "--vagrant"],
        cwd=lab.cwd,
        env=lab.env,
        check=True,
    )
    return time.monotonic() - started


def run(lab: Lab) -> int:
    if lab.index != 0:
        print("demo: the lab cluster file serves packages on lab 0's bridge; use -i 0")
        return 2
    release = etcd_release.release()
    if yaml.safe_load(SPEC.read_text())["etcd"]["download"]["sha256"]["amd64"] != release.sha256:
        print(f"demo: {SPEC}: etcd.download.sha256.amd64 must be {release.sha256}")
        return 2
    _say("lab machines by `vagrant up --provider=lxc` (cp1, w1, w2)")
    lab.up(1, 2, 0)
    print(f"ready in {lab.timings['ready']:.0f} s")
    repo = debs.build_repo(Path(tempfile.mkdtemp(prefix="k8sboot-demo-apt-")), LAB_KUBE_VERSIONS)
    server = debs.serve(repo, f"{lab.subnet}.1", REPO_PORT)
    try:
        _say("k8sboot up --vagrant")
        first = _k8sboot(lab, "up")
        _say("the nodes")
        kubectl = next((k for k in KUBECTLS if os.path.exists(k)), "kubectl")
        kubeconfig = SPEC.parent / ".k8sboot" / "lab" / "kubeconfig"
        subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "wide"], check=True
        )
        _say("k8sboot health --vagrant")
        _k8sboot(lab, "health")
        _say("k8sboot up --vagrant, again: nothing to change")
        again = _k8sboot(lab, "up")
    finally:
        server.shutdown()
        server.server_close()
    print(
        f"\nfirst up {first:.0f} s, re-run {again:.1f} s (both with two Vagrant calls).\n"
        f"kubeconfig: {kubeconfig}\n"
        "The lab runs Kubernetes stand-ins (tests/lab/standins); on real VMs k8sboot installs "
        "the upstream packages.\n"
        "Remove the machines: .venv/bin/python -m tests.lab down"
    )
    return 0
