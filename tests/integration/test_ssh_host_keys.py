"""SSH from the operator's side pins host keys on first use and refuses changed ones."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.lab.lab import Lab, Machine

pytestmark = pytest.mark.lab

SAVED = "/root/k8sboot-test-hostkeys"


def _ssh(
    lab: Lab, name: str, known_hosts: Path, strict: str = "accept-new"
) -> subprocess.CompletedProcess:
    m = lab.machine(name)
    options = lab.ssh_options(name, known_hosts=known_hosts, strict=strict)
    return subprocess.run(
        ["ssh", *options, m.ssh_host, "hostname"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def _paramiko_connect(m: Machine, known_hosts: Path) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            m.ssh_host,
            port=m.ssh_port,
            username=m.ssh_user,
            key_filename=str(m.ssh_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        _, out, _ = client.exec_command("hostname")
        assert out.read().decode().strip() == m.name
    finally:
        client.close()


@pytest.fixture
def rekeyable(lab: Lab) -> Iterator[Machine]:
    """A machine whose SSH host keys the test may replace; the originals come back after."""
    m = lab.with_role("worker")[0] if lab.with_role("worker") else lab.machines[0]
    lab.ssh(
        m.name,
        f"sudo rm -rf {SAVED} && sudo mkdir -m 700 {SAVED} && "
        f"sudo cp -p /etc/ssh/ssh_host_* {SAVED}/",
    )
    yield m
    # Not over SSH: the host key it would check is the one being restored.
    lab.attach(
        m.name,
        f"rm -f /etc/ssh/ssh_host_* && cp -p {SAVED}/* /etc/ssh/ && "
        f"rm -rf {SAVED} && systemctl restart ssh",
    )
    # The lab's own pinned key is valid again.
    lab.ssh(m.name, "true", reuse=False)


def test_first_use_pins_and_a_changed_key_is_refused(
    lab: Lab, rekeyable: Machine, tmp_path: Path
) -> None:
    m = rekeyable
    known_hosts = tmp_path / "known_hosts"

    # Unknown host: refused when unknown keys must not be accepted.
    strict = _ssh(lab, m.name, known_hosts, strict="yes")
    assert strict.returncode == 255 and "Host key verification failed" in strict.stderr
    assert not known_hosts.exists() or known_hosts.read_text() == ""

    # First use: accepted and pinned.
    first = _ssh(lab, m.name, known_hosts)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == m.name
    pinned = known_hosts.read_text().split()
    assert pinned[0] == m.ssh_host
    served = lab.ssh(m.name, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()
    assert pinned[1:3] == served[:2], "the pinned key is the machine's ed25519 host key"

    # The pin is honoured strictly afterwards, by OpenSSH and by Paramiko (which k8sboot
    # uses), from the same file.
    again = _ssh(lab, m.name, known_hosts, strict="yes")
    assert again.returncode == 0, again.stderr
    _paramiko_connect(m, known_hosts)

    # The machine gets new host keys (re-installed, or someone in the middle).
    lab.ssh(
        m.name,
        "sudo rm -f /etc/ssh/ssh_host_* && sudo ssh-keygen -A -q && sudo systemctl restart ssh",
    )
    before = known_hosts.read_text()
    changed = _ssh(lab, m.name, known_hosts)  # even with accept-new
    assert changed.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr or (
        "Host key verification failed" in changed.stderr
    ), changed.stderr
    assert known_hosts.read_text() == before, "a changed key must never replace the pinned one"
    with pytest.raises(paramiko.BadHostKeyException):
        _paramiko_connect(m, known_hosts)
    # The lab's own known_hosts refuses it as well.
    refused = lab.ssh(m.name, "true", reuse=False, check=False)
    assert refused.returncode == 255
