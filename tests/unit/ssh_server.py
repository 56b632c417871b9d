"""SSH servers in the test's own process (Paramiko's server side) on 127.0.0.1: they run
commands with this machine's /bin/sh and, when `forwarding`, forward channels to other
addresses as a bastion's sshd does (direct-tcpip). No machine, no root, no sshd."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def write_client_key(path: Path) -> paramiko.PKey:
    """An ed25519 private key file (0600) for the client; its public half to authorize."""
    private = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


class SSHServer:
    def __init__(self, authorized: paramiko.PKey, forwarding: bool = False):
        self.authorized = authorized
        self.forwarding = forwarding
        self.host_key = paramiko.ECDSAKey.generate()
        self.forwarded: list[tuple[str, int]] = []  # where direct-tcpip channels went
        self.logins: list[str] = []  # the user of each login
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    def close(self) -> None:
        self._listener.close()
        for transport in self._transports:
            transport.close()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(sock,), daemon=True).start()

    def _session(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as sshd does
        transport = paramiko.Transport(sock)
        self._transports.append(transport)
        transport.add_server_key(self.host_key)
        interface = _Interface(self)
        try:
            transport.start_server(server=interface)
        except (paramiko.SSHException, EOFError, OSError):
            return
        while transport.is_active():
            channel = transport.accept(0.5)
            if channel is None:
                continue
            destination = interface.forwards.pop(channel.get_id(), None)
            if destination is not None:
                threading.Thread(target=_forward, args=(channel, destination), daemon=True).start()


class _Interface(paramiko.ServerInterface):
    def __init__(self, server: SSHServer):
        self.server = server
        self.forwards: dict[int, tuple[str, int]] = {}

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if key.get_base64() != self.server.authorized.get_base64():
            return paramiko.AUTH_FAILED
        self.server.logins.append(username)
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=_execute, args=(channel, command), daemon=True).start()
        return True

    def check_channel_direct_tcpip_request(self, chanid, origin, destination) -> int:
        if not self.server.forwarding:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.server.forwarded.append(destination)
        self.forwards[chanid] = destination
        return paramiko.OPEN_SUCCEEDED


def _execute(channel: paramiko.Channel, command: bytes) -> None:
    # All of stdin first: the client sends its end only once the exec request has its
    # answer, which a command this quick could otherwise overtake with its exit.
    stdin = b""
    while data := channel.recv(1 << 16):
        stdin += data
    process = subprocess.Popen(
        ["/bin/sh", "-c", command.decode()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, channel.sendall), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, channel.sendall_stderr), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        process.stdin.write(stdin)
        process.stdin.close()
    except BrokenPipeError:
        pass
    for pump in pumps:
        pump.join()
    channel.send_exit_status(process.wait())
    channel.shutdown_write()
    channel.close()


def _pump(stream, send) -> None:
    while data := stream.read1(1 << 16):
        send(data)


def _forward(channel: paramiko.Channel, destination: tuple[str, int]) -> None:
    try:
        sock = socket.create_connection(destination, timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        channel.close()
        return

    def back() -> None:
        with contextlib.suppress(OSError, EOFError):
            while data := sock.recv(1 << 16):
                channel.sendall(data)
        channel.close()
        sock.close()

    threading.Thread(target=back, daemon=True).start()
    with contextlib.suppress(OSError, EOFError):
        while data := channel.recv(1 << 16):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
