"""Run k8sboot itself, as a user would, against lab machines made by `vagrant up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.labspec import HA_VERSION, write_lab_spec
from tests.lab import debs, etcd_release
from tests.lab.lab import Lab
from tests.lab.plugin import LAB_KUBE_VERSIONS, REPO_PORT

KUBECTL = next(
    (
        p
        for p in ("/usr/lib/google-cloud-sdk/bin/kubectl.1.33", "/usr/bin/kubectl")
        if Path(p).exists()
    ),
    "kubectl",
)


@dataclass
class K8sboot:
    """`k8sboot` in a directory with a cluster file, against the lab's Vagrant machines."""

    workdir: Path
    lab: Lab

    @property
    def env(self) -> dict[str, str]:
        return {**self.lab.env, "K8SBOOT_FILE": str(self.spec)}

    @property
    def spec(self) -> Path:
        return self.workdir / "cluster.yaml"

    @property
    def state(self) -> Path:
        return self.workdir / ".k8sboot" / "lab"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "k8sboot", *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 1200
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            self.command(*args),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"k8sboot {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def up(self, *extra: str) -> list[dict[str, Any]]:
        """`k8sboot up --vagrant -o json`; its events."""
        return events(self.run("up", "--vagrant", "-o", "json", *extra).stdout)

    def killed(self, args: list[str], at: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Run k8sboot with -o json and SIGKILL it, with its Ansible children, as soon as
        `at(event)` holds (it may wait for its moment); the events seen until then."""

        def kill(process: subprocess.Popen) -> bool:
            os.killpg(process.pid, signal.SIGKILL)
            return True  # read no further: a grandchild may hold the pipe open

        code, seen, _ = self.disturbed(args, at, kill)
        assert code == -signal.SIGKILL, f"k8sboot was not killed: exit {code}: {seen[-3:]}"
        return seen

    def disturbed(
        self,
        args: list[str],
        at: Callable[[dict[str, Any]], bool],
        disturb: Callable[[subprocess.Popen], bool],
    ) -> tuple[int, list[dict[str, Any]], str]:
        """Run k8sboot with -o json (in a process group of its own, with its Ansible
        children), call `disturb(process)` as soon as `at(event)` holds, and read on until
        the run ends (unless `disturb` says it ended it); its exit code, its events and its
        stderr."""
        with tempfile.TemporaryFile("w+") as stderr:
            process = subprocess.Popen(
                self.command(*args, "-o", "json"),
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
            seen: list[dict[str, Any]] = []
            disturbed = False
            assert process.stdout is not None
            for line in process.stdout:
                seen.append(json.loads(line))
                if not disturbed and at(seen[-1]):
                    disturbed = True
                    if disturb(process):
                        break
            process.wait(timeout=60)
            assert disturbed, f"the moment never came: {seen[-3:]}"
            stderr.seek(0)
            return process.returncode, seen, stderr.read()

    def kill_during(
        self, step: str, after: float, when: Callable[[], bool] | None = None
    ) -> list[dict[str, Any]]:
        """`up`, killed `after` seconds into `step`, and then as soon as `when()` holds
        (polled for at most 5 minutes)."""

        def at(event: dict[str, Any]) -> bool:
            if event.get("event") != "step_started" or event.get("step") != step:
                return False
            time.sleep(after)
            deadline = time.monotonic() + 300
            while when is not None and not when():
                assert time.monotonic() < deadline, f"{step}: the moment never came"
                time.sleep(0.5)
            return True

        return self.killed(["up", "--vagrant"], at)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.state / "kubeconfig"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def nodes(self) -> dict[str, bool]:
        """Node name -> Ready, as the real kubectl on the operator's machine sees them."""
        items = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return {
            n["metadata"]["name"]: any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
            for n in items
        }


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def finished(events_: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events_ if e["event"] == "run_finished")


# The machines of the first modules (bastion, etcd): three control planes, a worker and six
# etcd hosts (three for external etcd, three to replace them after they are lost), made in
# one `vagrant up` when the lab starts rather than in three.
FIRST_SHAPE = (3, 1, 6)


@pytest.fixture(scope="session")
def e2e_lab(lab_required: None, tmp_path_factory) -> Iterator[tuple[Lab, str]]:
    """A lab of its own (FIRST_SHAPE to start with), so that what k8sboot
    does to its machines never meets the other tests, with the stand-in packages served on
    its bridge. Yields the lab and the package repository's URL."""
    lab = Lab(index=int(os.environ.get("K8SBOOT_E2E_LAB_INDEX", "2")))
    try:
        lab.up(*FIRST_SHAPE, fresh=True)
        repo = tmp_path_factory.mktemp("e2e-apt")
        debs.build_repo(repo, list(LAB_KUBE_VERSIONS))
        address = f"{lab.subnet}.1"
        server = debs.serve(repo, address, REPO_PORT)
        try:
            yield lab, f"http://{address}:{REPO_PORT}/"
        finally:
            server.shutdown()
            server.server_close()
    finally:
        lab.destroy()


class SharedHA:
    """One cluster of 3 control planes behind kube-vip and 2 workers, brought up once (by
    `up --vagrant`, at HA_VERSION) and used by the modules that need that shape in turn:
    the HA bring-up checks, the upgrade (which leaves it one minor on, healthy), health
    (which undoes every fault it makes), node maintenance (which takes it apart, so it
    releases it). A module needing another shape releases it first."""

    def __init__(self, k8sboot: K8sboot, url: str) -> None:
        self.k8sboot = k8sboot
        self.url = url
        self.bring_up: list[list[dict[str, Any]]] = []  # the events of each `up` it took
        self.held = False

    def prepare(self) -> K8sboot:
        """The machines of this shape and the cluster file, before any `up`."""
        lab = self.k8sboot.lab
        lab.up(3, 2)
        write_lab_spec(lab, self.url, self.k8sboot.spec, version=HA_VERSION)
        return self.k8sboot

    def adopt(self, run: list[dict[str, Any]]) -> None:
        """A bring-up that a test made itself: the cluster is held from now on."""
        self.held = True
        self.bring_up.append(run)

    def acquire(self) -> K8sboot:
        lab = self.k8sboot.lab
        if self.held:
            lab.ensure_healthy()
            return self.k8sboot
        self.prepare()
        self.held = True
        # One `up`, as an operator runs it: a failure here is a failure of `up`.
        self.bring_up.append(self.k8sboot.up())
        assert finished(self.bring_up[-1])["ok"] is True
        return self.k8sboot

    def release(self) -> None:
        """Every machine running again (so that reset wipes them too), the cluster reset."""
        if self.held:
            self.held = False
            self.k8sboot.lab.ensure_healthy()
            self.k8sboot.run("reset", "--yes")


@pytest.fixture(scope="session")
def ha(e2e_lab: tuple[Lab, str], tmp_path_factory) -> Iterator[SharedHA]:
    lab, url = e2e_lab
    shared = SharedHA(_k8sboot(lab, url, tmp_path_factory.mktemp("ha")), url)
    yield shared
    shared.release()


@pytest.fixture(scope="module")
def k8sboot(e2e_lab: tuple[Lab, str], tmp_path_factory) -> K8sboot:
    lab, url = e2e_lab
    return _k8sboot(lab, url, tmp_path_factory.mktemp("cluster"))


def _k8sboot(lab: Lab, url: str, parent: Path) -> K8sboot:
    # A space and a quote in the project's path, so in the state directory's too: every
    # SSH, scp and Ansible command line of every test carries them (issue 15).
    workdir = parent / "operator's cluster"
    workdir.mkdir()
    spec = {
        "apiVersion": "k8sboot/v1alpha1",
        "kind": "Cluster",
        "name": "lab",
        "packages": {"source": "mirror", "url": url},
        "etcd": etcd_release.cluster_settings(url),
    }
    (workdir / "cluster.yaml").write_text(yaml.safe_dump(spec))
    return K8sboot(workdir, lab)
