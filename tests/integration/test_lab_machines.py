"""What tests do to lab machines: lose a node and get it back, cut its network and heal it."""

from __future__ import annotations

import pytest

from tests.lab.lab import Lab

pytestmark = pytest.mark.lab


def _reaches(lab: Lab, src: str, dst: str) -> bool:
    return lab.ssh(src, f"ping -c1 -W1 {lab.machine(dst).address}", check=False).ok


def test_partition_and_heal(healthy_lab: Lab) -> None:
    lab = healthy_lab
    cut, other = lab.with_role("worker")[0].name, lab.with_role("control-plane")[0].name
    assert _reaches(lab, other, cut)

    lab.partition(cut)
    assert lab.is_partitioned(cut)
    assert lab.state(cut) == "running", "a partitioned machine keeps running"
    assert not _reaches(lab, other, cut)
    assert not lab.ssh(cut, "true", check=False, connect_timeout=3).ok
    # Still reachable from the inside, e.g. to inspect what it sees.
    inside = lab.attach(cut, f"ping -c1 -W1 {lab.machine(other).address}", check=False)
    assert not inside.ok

    lab.heal(cut)
    assert not lab.is_partitioned(cut)
    lab.wait_ssh([cut], timeout=30)
    assert _reaches(lab, other, cut)


@pytest.mark.parametrize("force", [False, True], ids=["halt", "kill"])
def test_node_loss_and_recovery(healthy_lab: Lab, force: bool) -> None:
    lab = healthy_lab
    name = lab.with_role("worker")[-1].name
    lab.ssh(name, "echo survives | sudo tee /var/lib/k8sboot-lab-marker >/dev/null")
    started = lab.ssh(name, "ps -o lstart= -p 1").stdout

    lab.stop(name, force=force)
    assert lab.state(name) == "stopped"
    assert not lab.ssh(name, "true", check=False, connect_timeout=3).ok

    lab.start(name)
    assert lab.state(name) == "running"
    # Same machine: same disk, same host key (the pinned one is accepted), same address.
    assert lab.ssh(name, "cat /var/lib/k8sboot-lab-marker", reuse=False).stdout == "survives\n"
    assert lab.ssh(name, "ps -o lstart= -p 1").stdout != started, "its init started again"
    assert lab.ssh(name, "systemctl is-system-running --wait", check=False).stdout.strip() == (
        "running"
    )
    assert f" {lab.machine(name).address}/24 " in lab.ssh(name, "ip -4 -o addr show eth0").stdout
    lab.ssh(name, "sudo rm -f /var/lib/k8sboot-lab-marker")
