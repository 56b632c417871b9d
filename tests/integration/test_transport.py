"""k8sboot's SSH transport against real sshd in lab machines."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from k8sboot.errors import UserError
from k8sboot.inventory import SSHTarget
from k8sboot.runlog import Masker, RunLog
from k8sboot.transport import CommandFailed, HostKeyChanged, HostKeys, Transport


def _targets(lab) -> list[SSHTarget]:
    return [SSHTarget(m.name, m.ssh_host, m.ssh_port, m.ssh_user, m.ssh_key) for m in lab.machines]


def test_commands_run_as_root_in_parallel_over_one_connection(lab, tmp_path: Path) -> None:
    keys = HostKeys(tmp_path / "known_hosts", "accept-new")
    with Transport(_targets(lab), keys, RunLog(tmp_path / "run.log")) as transport:
        ids = transport.each(transport.names, lambda c: c.run("id -u").stdout.strip())
        assert ids == {m.name: "0" for m in lab.machines}  # the vagrant user, through sudo
        started = time.monotonic()
        for _ in range(10):
            transport.each(transport.names, lambda c: c.run("true"))
        assert time.monotonic() - started < 5, "commands reuse the open connections"
    pinned = (tmp_path / "known_hosts").read_text()
    assert all(m.ssh_host in pinned for m in lab.machines)


def test_connections_send_small_packets_at_once(lab, tmp_path: Path) -> None:
    """Nagle's algorithm would hold every channel request until the server's delayed ACK of
    the packet before it (40 ms a command on Linux)."""
    keys = HostKeys(tmp_path / "known_hosts", "accept-new")
    with Transport(_targets(lab), keys, RunLog(tmp_path / "run.log")) as transport:
        node = transport[lab.names[0]]
        node.run("true")
        sock = node._client.get_transport().sock  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_files_are_written_atomically_with_their_mode_and_read_back(lab, tmp_path) -> None:
    keys = HostKeys(tmp_path / "known_hosts", "accept-new")
    masker = Masker()
    masker.add("s3cr3t-value")
    log = RunLog(tmp_path / "run.log", masker)
    with Transport(_targets(lab), keys, log) as transport:
        node = transport[lab.names[0]]
        node.write_file("/tmp/k8sboot-test/secret.conf", b"token: s3cr3t-value\n", 0o600)
        assert node.run("stat -c '%a %U' /tmp/k8sboot-test/secret.conf").stdout == "600 root\n"
        assert node.read_file("/tmp/k8sboot-test/secret.conf", secret=True) == (
            b"token: s3cr3t-value\n"
        )
        assert node.read_file("/tmp/k8sboot-test/missing") is None
        sink = io.BytesIO()
        node.run("cat /usr/bin/etcd", stdout_to=sink)
        assert sink.tell() > 1_000_000
        with pytest.raises(CommandFailed, match=r"`echo bad >&2; exit 7` exited 7: bad"):
            node.run("echo bad >&2; exit 7")
        node.run("rm -rf /tmp/k8sboot-test")
    log.close()
    text = (tmp_path / "run.log").read_text()
    assert "s3cr3t-value" not in text and "write /tmp/k8sboot-test/secret.conf" in text


def test_bulk_streams_go_through_openssh_against_the_pinned_keys(lab, tmp_path: Path) -> None:
    data = os.urandom(24 << 20)
    keys = HostKeys(tmp_path / "known_hosts", "accept-new")
    log = RunLog(tmp_path / "run.log")
    with Transport(_targets(lab)[:1], keys, log) as transport:
        node = transport[lab.names[0]]
        sent = node.run(
            "cat > /tmp/k8sboot-bulk && sha256sum /tmp/k8sboot-bulk", stdin=io.BytesIO(data)
        )
        assert sent.stdout.split()[0] == hashlib.sha256(data).hexdigest()
        back = io.BytesIO()
        node.run("cat /tmp/k8sboot-bulk", stdout_to=back)
        assert back.getvalue() == data
        failed = node.run(
            "cat /tmp/k8sboot-bulk; echo gone >&2; exit 4", stdout_to=io.BytesIO(), check=False
        )
        assert (failed.exit_code, failed.stderr) == (4, "gone\n")
        node.run("rm -f /tmp/k8sboot-bulk")
        # The pinned key is what OpenSSH checks: another one there, and it refuses.
        pinned = keys.path.read_text()
        other = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
            .decode()
        )
        keys.path.write_text(
            "".join(f"{line.split()[0]} {other}\n" for line in pinned.splitlines())
        )
        with pytest.raises(HostKeyChanged, match=r"host key changed: OpenSSH refused"):
            node.run("cat /etc/hostname", stdout_to=io.BytesIO())
    log.close()


def test_strict_policy_refuses_an_unknown_host(lab, tmp_path: Path) -> None:
    # Nor in the operator's known_hosts: strict mode would pin a key it has.
    keys = HostKeys(tmp_path / "known_hosts", "strict", users=str(tmp_path / "operators"))
    with (
        Transport(_targets(lab)[:1], keys, RunLog(None)) as transport,
        pytest.raises(UserError, match=r"neither in .* nor in .* and ssh.hostKeyPolicy is strict"),
    ):
        transport[lab.names[0]].run("true")
    assert not (tmp_path / "known_hosts").exists()


def test_a_changed_host_key_is_refused(healthy_lab, tmp_path: Path) -> None:
    lab = healthy_lab
    name = lab.names[-1]
    keys = HostKeys(tmp_path / "known_hosts", "accept-new")
    targets = [t for t in _targets(lab) if t.name == name]
    with Transport(targets, keys, RunLog(None)) as transport:
        transport[name].run("true")
    lab.ssh(
        name,
        "sudo sh -c 'rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null "
        "&& systemctl restart ssh'",
    )
    lab.forget_host_key(name)  # the lab's own known_hosts; k8sboot's still pins the old key
    with (
        Transport(targets, HostKeys(tmp_path / "known_hosts", "accept-new"), RunLog(None)) as t,
        pytest.raises(HostKeyChanged, match="host key changed") as caught,
    ):
        t[name].run("true")
    assert caught.value.exit_code == 3
