"""Run commands on hosts and move files to and from them, over SSH (Fabric, Paramiko).

One place for the host-key policy, timeouts, retries and sudo. One SSH connection per
host per run (Fabric's Connection, through the bastion's when there is one, itself one
per run), reused by every command: each command is a Paramiko channel on it, as Fabric's
own `run` would cost a few threads and polls per command. A parallel fan-out over hosts.
Secrets travel on stdin, never on a command line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import select
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

import fabric
import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
from paramiko.hostkeys import InvalidHostKey

from k8sboot.errors import MachineError, UnsafeError, UserError
from k8sboot.inventory import SSH_CLIENT, SSHTarget, openssh_login
from k8sboot.runlog import RunLog

T = TypeVar("T")

# Paramiko logs its transport thread's failures (with tracebacks) to stderr when nothing
# else handles its logger; k8sboot reports those failures itself, one line per host.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
HostKeyPolicy = Literal["accept-new", "strict"]
_CHUNK = 1 << 20
_EOF_GRACE = 5.0  # seconds to wait for the end of a command's output after its exit
# AES-GCM first: with AES instructions the cheapest of OpenSSH's ciphers per byte.
_BULK_CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
# Where the operator's OpenSSH keeps the host keys it has seen: strict mode pins a key
# from there rather than refusing a host k8sboot has not met yet.
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"


class HostKeyChanged(UnsafeError):
    """The host presented a key other than the pinned one: possibly an attack."""


class Unreachable(MachineError):
    """No SSH connection could be made to the host."""


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    exit_code: int
    output: bytes  # stdout as received
    stderr: str
    seconds: float

    @property
    def stdout(self) -> str:
        return self.output.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandFailed(MachineError):
    def __init__(self, result: CommandResult, log: Path | None = None, shown: str | None = None):
        self.result = result
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        where = f" (full log: {log})" if log else ""
        super().__init__(
            f"{result.host}: `{shown or result.command}` exited {result.exit_code}: "
            f"{tail or 'no output'}{where}"
        )


class HostKeys:
    """known_hosts in the state directory: keys are pinned on first use (accept-new) or
    must be known already (strict): pinned there, or in the operator's own known_hosts,
    whence they are pinned. A key other than the known one is always refused."""

    def __init__(self, path: Path, policy: HostKeyPolicy, users: str | None = None):
        self.path = path
        self.policy = policy
        self.users_path = Path(users or USER_KNOWN_HOSTS).expanduser()
        self._users: paramiko.HostKeys | None = None
        self._lock = threading.Lock()
        self.keys = paramiko.HostKeys()
        if path.exists():
            self.keys.load(str(path))

    def name(self, address: str, port: int) -> str:
        return address if port == 22 else f"[{address}]:{port}"

    def configure(self, client: paramiko.SSHClient, name: str) -> None:
        """Before `client` connects to the host known_hosts calls `name`."""
        with self._lock:
            for hostname, entries in self.keys.items():
                for key_type, key in entries.items():
                    client.get_host_keys().add(hostname, key_type, key)
            if self.policy == "strict" and self.keys.lookup(name) is None:
                # Paramiko then asks for the key type the operator's file has, and
                # refuses another key (BadHostKeyException) as it would a pinned one.
                for key_type, key in (self._operators().lookup(name) or {}).items():
                    client.get_host_keys().add(name, key_type, key)
        client.set_missing_host_key_policy(_Policy(self))

    def vouched(self, name: str, key: paramiko.PKey) -> None:
        """After a connection: pin the key the operator's known_hosts vouched for."""
        with self._lock:
            if self.keys.lookup(name) is None:
                self._save(name, key)

    def source(self, name: str) -> Path:
        """The file that holds the key `name` must offer."""
        return self.path if self.keys.lookup(name) is not None else self.users_path

    def pin(self, hostname: str, key: paramiko.PKey) -> None:
        with self._lock:
            known = self.keys.lookup(hostname)
            if known:
                # A key of another type for a pinned host is a changed key, not a new host.
                raise HostKeyChanged(
                    f"{hostname}: offered a {key.get_name()} host key but "
                    f"{', '.join(known.keys())} is pinned in {self.path}; if the machine was "
                    "rebuilt, remove its line there and run again"
                )
            if self.policy == "strict":
                raise UserError(
                    f"{hostname}: host key neither in {self.path} nor in {self.users_path} "
                    f"and ssh.hostKeyPolicy is strict; add it ({key.get_name()} "
                    f"{key.fingerprint}) to either, or use accept-new"
                )
            self._save(hostname, key)

    def _save(self, hostname: str, key: paramiko.PKey) -> None:
        self.keys.add(hostname, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keys.save(str(self.path))
        self.path.chmod(0o600)

    def _operators(self) -> paramiko.HostKeys:
        if self._users is None:
            self._users = paramiko.HostKeys()
            # Only a help to strict mode: a file Paramiko cannot read helps with nothing.
            unreadable = (OSError, ValueError, paramiko.SSHException, InvalidHostKey)
            with contextlib.suppress(*unreadable):
                if self.users_path.is_file():
                    self._users.load(str(self.users_path))
        return self._users


class _Policy(paramiko.MissingHostKeyPolicy):
    def __init__(self, keys: HostKeys):
        self.host_keys = keys

    def missing_host_key(self, client, hostname, key):
        self.host_keys.pin(hostname, key)


def _private_key(path: Path) -> paramiko.PKey | None:
    """The private key at `path`, parsed once per process while the file is unchanged.
    None when it cannot be parsed without help (a passphrase)."""
    try:
        return _parsed_key(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm, paramiko.SSHException):
        return None


@functools.lru_cache(maxsize=16)
def _parsed_key(path: str, modified_ns: int) -> paramiko.PKey:
    data = Path(path).read_bytes()
    load = (
        serialization.load_ssh_private_key
        if b"BEGIN OPENSSH PRIVATE KEY" in data
        else serialization.load_pem_private_key
    )
    # Paramiko would have the RSA key's arithmetic validated, about 40 ms of CPU per
    # connection. That check guards against keys crafted by someone else; this is the
    # operator's own key file.
    loaded = load(data, None, unsafe_skip_rsa_key_validation=True)
    if isinstance(loaded, rsa.RSAPrivateKey):
        return paramiko.RSAKey(key=loaded)
    return paramiko.PKey.from_path(path)


# Commands at once on one connection: below OpenSSH's default MaxSessions (10).
MAX_CHANNELS = 8


def _bare_config() -> fabric.Config:
    """Everything a connection needs is in its target: no ssh_config read again (the
    target's address is already its HostName), none of Fabric's own configuration files.
    One per connection: Fabric writes to the configuration of each Connection it makes,
    and connections are made in parallel."""
    return fabric.Config(lazy=True, ssh_config=paramiko.SSHConfig())


def _socket(address: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=timeout)
    # Every command is a few small packets; with Nagle's algorithm each waited for the
    # server's delayed ACK of the one before (40 ms a channel here, as much on login).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Link(fabric.Connection):
    """Fabric's Connection, whose channel through a bastion is bounded by the connect
    timeout (Fabric asks for it with Paramiko's default of an hour, so a host behind the
    bastion that does not answer would hold a run as long)."""

    bastion = "the bastion"  # its name in errors; a class attribute, as Fabric wants

    def open_gateway(self):
        if not isinstance(self.gateway, fabric.Connection):
            return super().open_gateway()
        self.gateway.open()
        try:
            return self.gateway.transport.open_channel(
                "direct-tcpip",
                dest_addr=(self.host, int(self.port)),
                src_addr=("", 0),
                timeout=self.connect_kwargs["timeout"],
            )
        except paramiko.ChannelException as exc:
            if exc.code == OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                raise MachineError(
                    f"{self.bastion} refuses to forward connections to {self.host}:{self.port} "
                    f"({exc.text}); its sshd needs AllowTcpForwarding yes"
                ) from None
            raise ConnectionRefusedError(f"{self.bastion}: {exc.text}") from None
        except paramiko.SSHException as exc:
            if "Timeout" in str(exc):  # Paramiko says nothing more specific
                timeout = self.connect_kwargs["timeout"]
                raise TimeoutError(f"{self.bastion}: no answer within {timeout:.0f}s") from None
            raise


class Connection:
    """One SSH connection to one host, directly or through its bastion's connection.
    Commands run as root: directly, or through `sudo -n` for other users."""

    def __init__(
        self,
        target: SSHTarget,
        keys: HostKeys,
        log: RunLog,
        connect_timeout: float = 10,
        jump: Connection | None = None,
    ):
        self.target = target
        self.name = target.name
        self._keys = keys
        self._log = log
        self._connect_timeout = connect_timeout
        if jump is None and target.jump is not None:
            jump = Connection(target.jump, keys, log, connect_timeout)
        self._jump = jump  # shared by the hosts behind it (Transport._jumps)
        self._link: fabric.Connection | None = None
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)

    # -- connecting -----------------------------------------------------------------------

    def open(self, attempts: int = 3) -> Connection:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is not None and transport.is_active():
                return self
            for attempt in range(1, attempts + 1):
                try:
                    self._client = self._connect()
                    return self
                # Not worth a retry; a bastion's failure comes from its own open() retried.
                except (HostKeyChanged, UserError, MachineError):
                    raise
                except paramiko.BadHostKeyException as exc:
                    name = self._keys.name(self.target.address, self.target.port)
                    raise HostKeyChanged(
                        f"{self.name} ({self.target.address}): host key changed: known "
                        f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}, offered "
                        f"{exc.key.fingerprint}; if the machine was rebuilt, remove its line "
                        f"from {self._keys.source(name)} and run again"
                    ) from None
                except paramiko.AuthenticationException as exc:
                    raise MachineError(
                        f"{self.name}: SSH login as {self.target.user}@{self.target.address}:"
                        f"{self.target.port} refused ({exc}); check ssh.user and ssh.key"
                    ) from None
                except (OSError, paramiko.SSHException, EOFError) as exc:
                    # A host that did not answer within the connect timeout is down or cut
                    # off: asking again only multiplies the wait (a dead etcd member would
                    # cost every command three timeouts). Refusals and resets are retried.
                    if attempt == attempts or isinstance(exc, TimeoutError):
                        via = f" through {self._jump.name}" if self._jump else ""
                        raise Unreachable(
                            f"{self.name}: cannot reach {self.target.address}:{self.target.port}"
                            f" over SSH{via}: {exc or type(exc).__name__}"
                        ) from None
                    time.sleep(attempt)
        raise AssertionError("unreachable")

    def _connect(self) -> paramiko.SSHClient:
        target = self.target
        key = _private_key(target.key) if target.key else None
        options: dict = {
            "pkey": key,
            "timeout": self._connect_timeout,
            "banner_timeout": self._connect_timeout,
            "auth_timeout": self._connect_timeout,
            "allow_agent": target.key is None,
            "look_for_keys": target.key is None,
        }
        if target.key is not None and key is None:
            # Paramiko's own loading, for what _private_key left to it, reports the problem.
            options["key_filename"] = str(target.key)
        gateway: fabric.Connection | str | bool = False
        if self._jump is not None:
            gateway = self._jump.open()._link or False
        elif target.proxy_command is not None:
            gateway = target.proxy_command
        else:
            options["sock"] = _socket(target.address, target.port, self._connect_timeout)
        link = _Link(
            target.address,
            user=target.user,
            port=target.port,
            config=_bare_config(),
            gateway=gateway,
            connect_kwargs=options,
        )
        if self._jump is not None:
            link.bastion = self._jump.name
        name = self._keys.name(target.address, target.port)
        self._keys.configure(link.client, name)
        try:
            link.open()
        except BaseException:
            link.client.close()
            if "sock" in options:
                options["sock"].close()
            raise
        assert link.transport is not None
        self._keys.vouched(name, link.transport.get_remote_server_key())
        link.transport.set_keepalive(15)
        self._link = link
        return link.client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
                self._link = None

    # -- commands -------------------------------------------------------------------------

    def run(
        self,
        command: str,
        *,
        stdin: bytes | BinaryIO | None = None,
        timeout: float = 600,
        check: bool = True,
        secret_output: bool = False,
        stdout_to: BinaryIO | None = None,
        shown: str | None = None,
        quiet: bool = False,
    ) -> CommandResult:
        """Run a shell command as root. `stdout_to` streams stdout into a file instead of
        keeping it; `stdin` may be a stream (read in chunks); `secret_output` keeps stdout
        out of the log; `shown` is how the command is named in logs and errors when its
        text is long; `quiet` logs nothing (a poll, whose caller logs what changed)."""
        self.open()
        assert self._client is not None
        wrapped = self._wrap(command)
        label = shown or command
        if not quiet:
            self._log.write(self.name, f"$ {label}")
        started = time.monotonic()
        if stdout_to is not None or not (stdin is None or isinstance(stdin, bytes)):
            exit_code, out, err = self._bulk(wrapped, stdin, stdout_to, timeout, label)
        else:
            exit_code, out, err = self._session(wrapped, stdin, timeout, label)
        result = CommandResult(
            host=self.name,
            command=label,
            exit_code=exit_code,
            output=out,
            stderr=err.decode("utf-8", "replace"),
            seconds=time.monotonic() - started,
        )
        body = "<secret output not logged>" if secret_output else result.stdout
        if not quiet:
            self._log.write(
                self.name,
                f"exit {exit_code} after {result.seconds:.2f}s\n{body}\n{result.stderr}".rstrip(),
            )
        if check and exit_code != 0:
            raise CommandFailed(result, self._log.path, shown)
        return result

    def ask(self, command: str, **options) -> CommandResult:
        """Run a command that only looks (changes nothing on the host): the one kind of
        command a ReadOnlyHost runs, so that code which plans can share it with code which
        acts."""
        return self.run(command, **options)

    def _session(
        self, wrapped: str, stdin: bytes | None, timeout: float, label: str
    ) -> tuple[int, bytes, bytes]:
        """A command on a channel of the open Paramiko connection."""
        assert self._client is not None
        # sshd refuses a channel beyond its MaxSessions (10 by default), and a refused
        # channel closes this connection under every command running on it: questions
        # asked all at once wait for a free channel instead.
        with self._channels:
            try:
                channel = self._client.get_transport().open_session(timeout=self._connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.close()
                raise MachineError(f"{self.name}: SSH session failed: {exc}") from None
            with channel:
                channel.exec_command(wrapped)
                if stdin:
                    channel.sendall(stdin)
                channel.shutdown_write()
                out, err = self._collect(channel, timeout, label)
                status = channel.recv_exit_status()
        link = self._client.get_transport() if self._client is not None else None
        if status == -1 and (link is None or not link.is_active()):
            # No exit status and no connection: the host went away under the command.
            self.close()
            raise Unreachable(
                f"{self.name}: the connection was lost while `{label}` ran (did the host "
                "reboot or leave the network?); once it is back, run the same command again"
            )
        return status, out, err

    def _bulk(
        self,
        wrapped: str,
        stdin: BinaryIO | bytes | None,
        sink: BinaryIO | None,
        timeout: float,
        label: str,
    ) -> tuple[int, bytes, bytes]:
        """A command through OpenSSH's client: `stdin` streamed in chunks, stdout into
        `sink` (or kept); strict checking against the pinned keys, no prompts."""
        target = self.target
        try:
            process = subprocess.Popen(
                [SSH_CLIENT, "-T", *self._openssh_options(), target.address, wrapped],
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            raise _no_ssh_client() from None
        assert process.stdout is not None and process.stderr is not None
        err: list[bytes] = []
        out: list[bytes] = []
        feed_failed: list[BaseException] = []
        pumps = [threading.Thread(target=lambda: err.append(process.stderr.read()))]
        if stdin is not None:
            pumps.append(threading.Thread(target=_feed, args=(stdin, process.stdin, feed_failed)))
        for pump in pumps:
            pump.daemon = True
            pump.start()
        expired = threading.Event()
        timer = threading.Timer(timeout, lambda: (expired.set(), process.kill()))
        timer.start()
        try:
            while chunk := process.stdout.read1(_CHUNK):
                if sink is not None:
                    sink.write(chunk)
                else:
                    out.append(chunk)
            exit_code = process.wait()
            for pump in pumps:
                pump.join()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if feed_failed:  # reading what we send failed (a wrong key, say): that is the error
            raise feed_failed[0]
        if expired.is_set():
            raise MachineError(f"{self.name}: `{label}` did not finish within {timeout:.0f}s")
        if exit_code == 255:  # ssh's own failure, not the command's
            lines = b"".join(err).decode("utf-8", "replace").strip().splitlines()
            detail = lines[-1].strip() if lines else "no message"
            if detail.startswith("Host key verification failed"):
                raise HostKeyChanged(
                    f"{self.name} ({target.address}): host key changed: OpenSSH refused the "
                    f"key offered against {self._keys.path}; if the machine was rebuilt, "
                    "remove its line there and run again"
                )
            raise MachineError(f"{self.name}: OpenSSH could not run `{label}`: {detail}")
        return exit_code, b"".join(out), b"".join(err)

    def openssh_command(self, remote: Sequence[str], tty: bool | None = None) -> list[str]:
        """OpenSSH's client to this host with the options of the bulk transfers (the pinned
        host keys, no prompts), for a person at a terminal: a login shell, or `remote` run
        by the login shell (as `ssh` runs it). `tty`: a terminal (True), none (False), or
        ssh's own choice (None)."""
        terminal = {True: ["-t"], False: ["-T"], None: []}[tty]
        return [SSH_CLIENT, *terminal, *self._openssh_options(), "--", self.target.address, *remote]

    def _openssh_options(self) -> list[str]:
        """OpenSSH's options for this host: the way the connection reaches it, and
        checked strictly against the pinned keys (which the connection pinned first)."""
        return [
            *openssh_login(self.target, self._keys.path, "yes", self._connect_timeout),
            "-o", "ServerAliveInterval=15",
            "-o", f"Ciphers={_BULK_CIPHERS}",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def _wrap(self, command: str) -> str:
        script = f"export LC_ALL=C; {command}"
        if self.target.needs_sudo:
            return f"sudo -n -- sh -c {shlex.quote(script)}"
        return f"sh -c {shlex.quote(script)}"

    def _collect(
        self, channel: paramiko.Channel, timeout: float, label: str
    ) -> tuple[bytes, bytes]:
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout
        eof_by: float | None = None
        while True:
            drained = False
            while channel.recv_ready():
                out.append(channel.recv(_CHUNK))
                drained = True
            while channel.recv_stderr_ready():
                err.append(channel.recv_stderr(_CHUNK))
                drained = True
            if channel.exit_status_ready() and not (
                channel.recv_ready() or channel.recv_stderr_ready()
            ):
                # sshd may send the exit status before the last of the output: wait for
                # the end of the output too (briefly, in case a background process keeps
                # it open).
                if channel.eof_received:
                    break
                eof_by = eof_by or time.monotonic() + _EOF_GRACE
                if time.monotonic() > eof_by:
                    break
            if drained:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                channel.close()
                raise MachineError(f"{self.name}: `{label}` did not finish within {timeout:.0f}s")
            select.select([channel], [], [], min(remaining, 1.0))
        return b"".join(out), b"".join(err)

    # -- files ----------------------------------------------------------------------------

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        """Replace `path` atomically with `content` (sent on stdin), owned by root."""
        quoted = shlex.quote(path)
        tmp = shlex.quote(f"{path}.k8sboot-tmp")
        directory = shlex.quote(str(Path(path).parent))
        self.run(
            f"umask 077 && mkdir -p {directory} && cat > {tmp} && chmod {mode:o} {tmp} "
            f"&& mv -f {tmp} {quoted}",
            stdin=content,
            shown=f"write {path} ({len(content)} bytes, mode {mode:o})",
        )

    def read_file(self, path: str, secret: bool = False) -> bytes | None:
        """The file's content, or None when it does not exist."""
        quoted = shlex.quote(path)
        result = self.run(
            f"if [ -e {quoted} ]; then cat {quoted}; else exit 3; fi",
            check=False,
            secret_output=secret,
            shown=f"read {path}",
        )
        if result.exit_code == 3:
            return None
        if not result.ok:
            raise CommandFailed(result, self._log.path, f"read {path}")
        return result.output


def _feed(source: BinaryIO | bytes, pipe: BinaryIO, failed: list[BaseException]) -> None:
    """Send `source` to the pipe and close it; an error reading `source` goes to `failed`
    (the pipe is then closed early, and the caller raises it)."""
    try:
        if isinstance(source, bytes):
            pipe.write(source)
        else:
            while chunk := source.read(_CHUNK):
                pipe.write(chunk)
    except BrokenPipeError:  # the command ended early: its exit code says why
        pass
    except BaseException as error:
        failed.append(error)
    finally:
        with contextlib.suppress(BrokenPipeError):
            pipe.close()


def require_ssh_client() -> None:
    """Ansible and bulk transfers go through OpenSSH's client: a run that may change
    machines checks for it before it starts, not half-way."""
    if shutil.which(SSH_CLIENT) is None:
        raise _no_ssh_client()


def _no_ssh_client() -> UserError:
    return UserError(
        f"{SSH_CLIENT} is not installed (not on PATH); install OpenSSH's client "
        "(openssh-client): Ansible and etcd snapshot transfers go through it"
    )


class Transport:
    """Connections to a set of hosts, opened on first use and shared by every step."""

    def __init__(
        self,
        targets: Iterable[SSHTarget],
        host_keys: HostKeys,
        log: RunLog,
        connect_timeout: float = 10,
    ):
        self.log = log
        self._keys = host_keys
        self._timeout = connect_timeout
        # One connection per bastion, shared by every host behind it.
        self._jumps: dict[SSHTarget, Connection] = {}
        self._connections = {
            t.name: Connection(t, host_keys, log, connect_timeout, self._jump(t)) for t in targets
        }

    def _jump(self, target: SSHTarget) -> Connection | None:
        jump = target.jump
        if jump is None:
            return None
        if jump not in self._jumps:
            behind = self._jump(jump)  # a bastion reached through another
            self._jumps[jump] = Connection(jump, self._keys, self.log, self._timeout, behind)
        return self._jumps[jump]

    def __getitem__(self, name: str) -> Connection:
        return self._connections[name]

    @property
    def names(self) -> list[str]:
        return list(self._connections)

    def each(
        self, names: Iterable[str], work: Callable[[Connection], T], workers: int | None = None
    ) -> dict[str, T | BaseException]:
        """Run `work` on every named host in parallel; each result or exception by host."""
        names = list(names)
        results: dict[str, T | BaseException] = {}
        if not names:
            return results
        with ThreadPoolExecutor(max_workers=workers or min(32, len(names))) as pool:
            futures = {name: pool.submit(work, self._connections[name]) for name in names}
            for name, future in futures.items():
                try:
                    results[name] = future.result()
                except Exception as exc:  # reported per host by the caller
                    results[name] = exc
        return results

    def close(self) -> None:
        for connection in [*self._connections.values(), *self._jumps.values()]:
            connection.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReadOnlyHost:
    """What planning may do on a host: read files and ask questions (commands its caller
    marks as changing nothing, with `ask`). It has no `run`, `write_file` or `download`:
    only the executor, which holds the Transport, changes a machine."""

    def __init__(self, connection: Connection):
        self._connection = connection

    @property
    def name(self) -> str:
        return self._connection.name

    def open(self, attempts: int = 3) -> ReadOnlyHost:
        """Connected now (connecting changes nothing on the host), or the reason it cannot be."""
        return ReadOnlyHost(self._connection.open(attempts))

    def ask(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float = 600,
        check: bool = True,
        secret_output: bool = False,
        shown: str | None = None,
        quiet: bool = False,
    ) -> CommandResult:
        return self._connection.ask(
            command,
            stdin=stdin,
            timeout=timeout,
            check=check,
            secret_output=secret_output,
            shown=shown,
            quiet=quiet,
        )

    def read_file(self, path: str, secret: bool = False) -> bytes | None:
        return self._connection.read_file(path, secret=secret)


# What a question (a command that only looks) can be asked through: either.
Askable = Connection | ReadOnlyHost


class ReadOnlyHosts:
    """The read-only view of a Transport that steps plan with."""

    def __init__(self, transport: Transport):
        self._transport = transport

    def __getitem__(self, name: str) -> ReadOnlyHost:
        return ReadOnlyHost(self._transport[name])

    @property
    def names(self) -> list[str]:
        return self._transport.names

    def each(
        self, names: Iterable[str], work: Callable[[ReadOnlyHost], T]
    ) -> dict[str, T | BaseException]:
        return self._transport.each(names, lambda c: work(ReadOnlyHost(c)))
