"""containerd + runc inside a lab machine run a container from a locally imported image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.images import BUSYBOX, busybox_image
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab

NAMESPACE = "k8sboot-test"
IMAGE = "lab.k8sboot.test/busybox:1"


@pytest.fixture
def containerd_machine(lab: Lab) -> Iterator[str]:
    """A machine with containerd running; stopped and wiped again afterwards."""
    if not BUSYBOX.exists():
        pytest.fail(f"{BUSYBOX} missing: install busybox-static (.ci/lab-deps)", pytrace=False)
    name = lab.with_role("control-plane")[0].name
    lab.ssh(name, "sudo systemctl start containerd && systemctl is-active containerd")
    yield name
    ctr = f"sudo ctr -n {NAMESPACE}"
    lab.ssh(
        name,
        f"for c in $({ctr} containers ls -q); do "
        f"{ctr} tasks kill -s KILL $c; {ctr} containers rm $c; done; "
        f"{ctr} images rm {IMAGE}; {ctr} content prune references; "
        f"sudo ctr namespaces rm {NAMESPACE}; sudo systemctl stop containerd; "
        "sudo rm -rf /tmp/busybox-image.tar",
        check=False,
    )


@pytest.mark.parametrize("cgroup_driver", ["cgroupfs", "systemd"])
def test_runs_a_container_from_an_imported_image(
    lab: Lab, containerd_machine: str, cgroup_driver: str
) -> None:
    name = containerd_machine
    lab.put(name, busybox_image(IMAGE), "/tmp/busybox-image.tar")
    imported = lab.ssh(name, f"sudo ctr -n {NAMESPACE} images import /tmp/busybox-image.tar")
    assert IMAGE in imported.stdout
    listed = lab.ssh(name, f"sudo ctr -n {NAMESPACE} images ls -q").stdout.split()
    assert IMAGE in listed

    systemd = "--runc-systemd-cgroup " if cgroup_driver == "systemd" else ""
    cgroup = f"--cgroup k8sboot.slice:k8sboot:{cgroup_driver} " if systemd else ""
    script = "echo hello-from-runc pid=$$; cat /proc/self/cgroup"
    run = lab.ssh(
        name,
        f"sudo ctr -n {NAMESPACE} run --rm {systemd}{cgroup}{IMAGE} "
        f"lab-{cgroup_driver} /bin/sh -c '{script}'",
    )
    lines = run.stdout.splitlines()
    # PID 1 of its own PID namespace, from the image's busybox.
    assert lines[0] == "hello-from-runc pid=1", run.stdout
    memory = next(line for line in lines if ":memory:" in line)
    if cgroup_driver == "systemd":
        assert "k8sboot.slice" in memory, run.stdout
    else:
        assert f"/{NAMESPACE}/lab-{cgroup_driver}" in memory, run.stdout

    # --rm removed the container; nothing keeps running.
    assert lab.ssh(name, f"sudo ctr -n {NAMESPACE} containers ls -q").stdout.strip() == ""
