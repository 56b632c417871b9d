"""A second lab, made the light way (plain LXC), lives beside the session lab and goes
away without a trace."""

from __future__ import annotations

import pytest

from tests.lab.lab import Lab

pytestmark = pytest.mark.lab


def test_light_lab_beside_the_session_lab(lab: Lab) -> None:
    other = Lab(index=(lab.index + 1) % 256, backend="lxc")
    try:
        machines = other.up(control_planes=1, workers=1)
        assert [m.name for m in machines] == ["cp1", "w1"]
        assert {m.address for m in machines} == {f"{other.subnet}.11", f"{other.subnet}.101"}
        assert other.ssh("cp1", f"ping -c1 -W2 {other.machine('w1').address}").ok
        assert other.ssh("w1", "hostname; systemctl is-system-running --wait").stdout.split() == [
            "w1",
            "running",
        ]
        # Separate bridges, and the host routes nothing between them.
        session_machine = lab.machines[0]
        assert not lab.ssh(
            session_machine.name, f"ping -c1 -W1 {other.machine('cp1').address}", check=False
        ).ok
        # The light lab writes the same machines file as the Vagrantfile would.
        assert other.machines_file.exists()
    finally:
        other.destroy()
    assert other.leftovers() == []
    # The session lab did not notice.
    assert all(lab.state(m.name) == "running" for m in lab.machines)
    assert lab.ssh(lab.names[0], "true").ok
