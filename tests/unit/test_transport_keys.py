"""The operator's private key is parsed once per process, whatever its type and format."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from k8sboot.transport import _private_key

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEYS = {
    "rsa-pem": (RSA, serialization.PrivateFormat.TraditionalOpenSSL, paramiko.RSAKey),
    "rsa-openssh": (RSA, serialization.PrivateFormat.OpenSSH, paramiko.RSAKey),
    "ed25519": (
        ed25519.Ed25519PrivateKey.generate(),
        serialization.PrivateFormat.OpenSSH,
        paramiko.Ed25519Key,
    ),
    "ecdsa": (
        ec.generate_private_key(ec.SECP256R1()),
        serialization.PrivateFormat.OpenSSH,
        paramiko.ECDSAKey,
    ),
}


def write(path: Path, key, fmt, password: bytes | None = None) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_each_key_type_loads_as_paramiko_would(kind: str, tmp_path: Path) -> None:
    key, fmt, expected = KEYS[kind]
    loaded = _private_key(write(tmp_path / kind, key, fmt))
    assert isinstance(loaded, expected)
    assert loaded.get_base64() == expected.from_path(str(tmp_path / kind)).get_base64()


def test_a_key_is_parsed_once_until_its_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "id", RSA, serialization.PrivateFormat.OpenSSH)
    first = _private_key(path)
    assert _private_key(path) is first
    other = ed25519.Ed25519PrivateKey.generate()
    write(path, other, serialization.PrivateFormat.OpenSSH)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert isinstance(_private_key(path), paramiko.Ed25519Key)


def test_keys_it_cannot_parse_alone_are_left_to_paramiko(tmp_path: Path) -> None:
    encrypted = write(tmp_path / "enc", RSA, serialization.PrivateFormat.OpenSSH, b"secret")
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    assert _private_key(encrypted) is None
    assert _private_key(garbage) is None
    assert _private_key(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("error", "tries"),
    [(TimeoutError("timed out"), 1), (ConnectionRefusedError(111, "refused"), 3)],
)
def test_a_host_that_times_out_is_not_asked_again(
    error: OSError, tries: int, tmp_path: Path, monkeypatch
) -> None:
    """A dead host (a lost etcd member) cost three connect timeouts and two pauses on every
    command; a refused connection (sshd restarting) is still retried."""
    from k8sboot import transport
    from k8sboot.inventory import SSHTarget
    from k8sboot.runlog import RunLog

    calls = []

    def connect(address, timeout):
        calls.append(address)
        raise error

    monkeypatch.setattr(transport.socket, "create_connection", connect)
    monkeypatch.setattr(transport.time, "sleep", lambda seconds: None)
    keys = transport.HostKeys(tmp_path / "known_hosts", "accept-new")
    target = SSHTarget("etcd1", "10.0.0.31", 22, "root", None)
    connection = transport.Connection(target, keys, RunLog(None), connect_timeout=3)
    with pytest.raises(transport.Unreachable, match=r"etcd1: cannot reach 10\.0\.0\.31:22"):
        connection.open()
    assert len(calls) == tries


def test_commands_at_once_on_one_connection_stay_below_sshds_max_sessions(
    tmp_path: Path, monkeypatch
) -> None:
    """`health` asked eleven questions of one control plane at once after etcd status went
    one member at a time; sshd (MaxSessions 10) refused the eleventh channel, and the
    refusal closed the connection under the ten others."""
    import threading
    import time as clock

    from k8sboot import transport
    from k8sboot.inventory import SSHTarget
    from k8sboot.runlog import RunLog

    lock, open_now, most = threading.Lock(), [0], [0]

    class Channel:
        def __enter__(self):
            with lock:
                open_now[0] += 1
                most[0] = max(most[0], open_now[0])
                if open_now[0] > 10:
                    raise EOFError()  # what sshd's refusal looks like to paramiko
            return self

        def __exit__(self, *exc):
            with lock:
                open_now[0] -= 1

        def exec_command(self, command):
            clock.sleep(0.05)

        def sendall(self, data):
            pass

        def shutdown_write(self):
            pass

        def recv_exit_status(self):
            return 0

    class Client:
        def get_transport(self):
            return type("T", (), {"open_session": lambda self, timeout: Channel()})()

    keys = transport.HostKeys(tmp_path / "known_hosts", "accept-new")
    connection = transport.Connection(
        SSHTarget("cp1", "10.0.0.11", 22, "root", None), keys, RunLog(None)
    )
    connection._client = Client()  # type: ignore[assignment]
    monkeypatch.setattr(connection, "_collect", lambda channel, timeout, label: (b"", b""))
    threads = [
        threading.Thread(target=connection._session, args=("true", None, 10, "true"))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 < most[0] <= transport.MAX_CHANNELS < 10


def test_an_exception_that_says_nothing_is_still_an_error() -> None:
    from k8sboot.health.observe import _error

    assert _error(EOFError()) == "EOFError"
    assert _error(ValueError("bad")) == "bad"
    assert _error({"nodes": 3}) is None


# -- through a bastion, against SSH servers in this process (tests/unit/ssh_server.py) ------


@pytest.fixture
def servers(tmp_path: Path):
    """A bastion that forwards, two hosts behind it, and the client's key file."""
    from .ssh_server import SSHServer, write_client_key

    public = write_client_key(tmp_path / "id")
    started = {
        "bastion": SSHServer(public, forwarding=True),
        "n1": SSHServer(public),
        "n2": SSHServer(public),
    }
    yield started
    for server in started.values():
        server.close()


def _targets(servers, tmp_path: Path, names=("n1", "n2")):
    from k8sboot.inventory import SSHTarget

    key = tmp_path / "id"
    jump = SSHTarget("bastion", "127.0.0.1", servers["bastion"].port, "root", key)
    return [SSHTarget(n, "127.0.0.1", servers[n].port, "root", key, jump=jump) for n in names]


def test_commands_go_through_one_bastion_connection_and_pin_its_key_too(
    servers, tmp_path: Path
) -> None:
    import socket

    from k8sboot.runlog import RunLog
    from k8sboot.transport import HostKeys, Transport

    known_hosts = tmp_path / "known_hosts"
    keys = HostKeys(known_hosts, "accept-new")
    with Transport(_targets(servers, tmp_path), keys, RunLog(None)) as transport:
        results = transport.each(["n1", "n2"], lambda c: c.run("echo $((6 * 7))").stdout)
        bastion = transport["n1"]._jump
        assert bastion is transport["n2"]._jump
        sock = bastion._client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert results == {"n1": "42\n", "n2": "42\n"}
    assert servers["bastion"].logins == ["root"]  # one connection for both hosts
    assert sorted(servers["bastion"].forwarded) == sorted(
        ("127.0.0.1", servers[n].port) for n in ("n1", "n2")
    )
    assert sorted(known_hosts.read_text().splitlines()) == sorted(
        s.known_hosts_line().strip() for s in servers.values()
    )


def test_a_bastion_whose_key_changed_is_refused(servers, tmp_path: Path) -> None:
    from k8sboot.runlog import RunLog
    from k8sboot.transport import HostKeyChanged, HostKeys, Transport

    known_hosts = tmp_path / "known_hosts"
    other = paramiko.ECDSAKey.generate()
    known_hosts.write_text(
        f"[127.0.0.1]:{servers['bastion'].port} {other.get_name()} {other.get_base64()}\n"
    )
    keys = HostKeys(known_hosts, "accept-new")
    with (
        Transport(_targets(servers, tmp_path, ["n1"]), keys, RunLog(None)) as transport,
        pytest.raises(HostKeyChanged, match=r"^bastion \(127\.0\.0\.1\): host key changed"),
    ):
        transport["n1"].run("true")
    assert servers["bastion"].logins == servers["n1"].logins == []


def test_a_bastion_that_does_not_forward_says_so(tmp_path: Path) -> None:
    from k8sboot.errors import MachineError
    from k8sboot.inventory import SSHTarget
    from k8sboot.runlog import RunLog
    from k8sboot.transport import Connection, HostKeys

    from .ssh_server import SSHServer, write_client_key

    public = write_client_key(tmp_path / "id")
    bastion = SSHServer(public, forwarding=False)
    jump = SSHTarget("bastion", "127.0.0.1", bastion.port, "root", tmp_path / "id")
    target = SSHTarget("n1", "127.0.0.1", 9, "root", tmp_path / "id", jump=jump)
    connection = Connection(target, HostKeys(tmp_path / "known_hosts", "accept-new"), RunLog(None))
    with pytest.raises(MachineError, match=r"bastion refuses to forward .*AllowTcpForwarding yes"):
        connection.run("true")
    bastion.close()


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_strict_mode_pins_the_key_the_operators_known_hosts_has(
    servers, tmp_path: Path, monkeypatch, hashed: bool
) -> None:
    from k8sboot import transport
    from k8sboot.inventory import SSHTarget
    from k8sboot.runlog import RunLog

    server = servers["n1"]
    name = f"[127.0.0.1]:{server.port}"
    if hashed:
        name = paramiko.HostKeys.hash_host(name)
    operators = tmp_path / "operators_known_hosts"
    operators.write_text(
        "# the operator's own\n"
        f"{name} {server.host_key.get_name()} {server.host_key.get_base64()}\n"
    )
    monkeypatch.setattr(transport, "USER_KNOWN_HOSTS", str(operators))
    known_hosts = tmp_path / "known_hosts"
    keys = transport.HostKeys(known_hosts, "strict")
    direct = SSHTarget("n1", "127.0.0.1", server.port, "root", tmp_path / "id")
    with transport.Transport([direct], keys, RunLog(None)) as hosts:
        assert hosts["n1"].run("echo ok").stdout == "ok\n"
    assert known_hosts.read_text() == server.known_hosts_line()


def test_strict_mode_refuses_a_key_other_than_the_operators_known_hosts_has(
    servers, tmp_path: Path, monkeypatch
) -> None:
    from k8sboot import transport
    from k8sboot.inventory import SSHTarget
    from k8sboot.runlog import RunLog

    server = servers["n1"]
    other = paramiko.ECDSAKey.generate()
    operators = tmp_path / "operators_known_hosts"
    operators.write_text(f"[127.0.0.1]:{server.port} {other.get_name()} {other.get_base64()}\n")
    monkeypatch.setattr(transport, "USER_KNOWN_HOSTS", str(operators))
    known_hosts = tmp_path / "known_hosts"
    keys = transport.HostKeys(known_hosts, "strict")
    target = SSHTarget("n1", "127.0.0.1", server.port, "root", tmp_path / "id")
    with (
        transport.Transport([target], keys, RunLog(None)) as hosts,
        pytest.raises(transport.HostKeyChanged, match=f"from {operators} and run again$"),
    ):
        hosts["n1"].run("true")
    assert not known_hosts.exists()
    assert server.logins == []


def test_strict_mode_refuses_a_host_neither_file_knows(servers, tmp_path: Path) -> None:
    from k8sboot import transport
    from k8sboot.errors import UserError
    from k8sboot.inventory import SSHTarget
    from k8sboot.runlog import RunLog

    server = servers["n1"]
    keys = transport.HostKeys(tmp_path / "known_hosts", "strict")
    target = SSHTarget("n1", "127.0.0.1", server.port, "root", tmp_path / "id")
    with (
        transport.Transport([target], keys, RunLog(None)) as hosts,
        pytest.raises(UserError, match=r"neither in .* nor in .*; add it"),
    ):
        hosts["n1"].run("true")
    assert server.logins == []
