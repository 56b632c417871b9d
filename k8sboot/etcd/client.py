"""etcdctl on a host: members, health, status, alarms, defragmentation, snapshots.

Every call parses `-w json`, never text (etcd 3.4 prints some plain results on stderr).
Member IDs arrive as decimal numbers and are given back in hex, the form `member remove`
takes. Members are matched by ID and peer URL, never by a piece of an address.
"""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from k8sboot.errors import MachineError
from k8sboot.etcd.tools import EtcdTools
from k8sboot.kubeadm_node import ETCD_PKI_DIR
from k8sboot.timeouts import ETCD_ANSWER_TIMEOUT, ETCD_DIAL_TIMEOUT, ETCD_POLL_TIMEOUT
from k8sboot.transport import Askable
from k8sboot.versions import ETCDCTL, ETCDUTL

CLIENT_PORT = 2379
PEER_PORT = 2380


@dataclass(frozen=True)
class EtcdTLS:
    """Where a host keeps the etcd CA and a client certificate signed by it."""

    cacert: str
    cert: str
    key: str


NO_TLS = EtcdTLS("", "", "")
# kubeadm's stacked etcd.
STACKED_TLS = EtcdTLS(
    f"{ETCD_PKI_DIR}/ca.crt",
    f"{ETCD_PKI_DIR}/healthcheck-client.crt",
    f"{ETCD_PKI_DIR}/healthcheck-client.key",
)


def client_url(ip: str) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}:{CLIENT_PORT}"


def peer_url(ip: str) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}:{PEER_PORT}"


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: str
    member_id: int
    leader_id: int
    version: str
    db_size: int
    db_size_in_use: int
    revision: int
    raft_index: int
    raft_term: int
    errors: tuple[str, ...]


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: str
    healthy: bool
    took: str
    error: str


@dataclass(frozen=True)
class SnapshotStatus:
    hash: int
    revision: int
    total_keys: int
    total_size: int


@dataclass(frozen=True)
class Alarm:
    member_id: int
    alarm: str  # NOSPACE or CORRUPT


ALARMS = {1: "NOSPACE", 2: "CORRUPT"}


class EtcdCtl:
    """etcdctl (API v3) run as root on `connection`'s host, against `endpoints`. With
    `tools` known, snapshot files are read and restored with etcdutl where it exists.
    Questions are asked (`ask`), changes run: on a ReadOnlyHost (planning) only the
    questions work."""

    def __init__(
        self,
        connection: Askable,
        tls: EtcdTLS,
        endpoints: list[str],
        tools: EtcdTools | None = None,
    ):
        self.connection = connection
        self.tls = tls
        self.endpoints = endpoints
        self.tools = tools

    def _command(self, args: str, endpoints: list[str] | None = None, timeout: int = 30) -> str:
        chosen = ",".join(endpoints or self.endpoints)
        tls = (
            f"--cacert={self.tls.cacert} --cert={self.tls.cert} --key={self.tls.key} "
            if self.tls.cacert
            else ""  # the throw-away etcd of etcd verify has no TLS: root alone reaches it
        )
        return (
            f"ETCDCTL_API=3 {ETCDCTL} --endpoints={shlex.quote(chosen)} {tls}"
            f"--dial-timeout={ETCD_DIAL_TIMEOUT}s --command-timeout={timeout}s {args}"
        )

    def _json(
        self,
        args: str,
        endpoints: list[str] | None = None,
        check: bool = True,
        timeout: int = 30,
        *,
        asks: bool = False,  # the command only looks: it may run while planning
        quiet: bool = False,  # a poll: its caller logs what changed
    ) -> Any:
        send = self.connection.ask if asks else self.connection.run  # type: ignore[union-attr]
        result = send(
            self._command(args, endpoints, timeout),
            check=False,
            timeout=timeout + 90,
            quiet=quiet,
        )
        if check and not result.ok:
            tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
            raise MachineError(
                f"{self.connection.name}: etcdctl {args.split(' -w')[0]} failed: {tail}"
            )
        try:
            return json.loads(result.stdout) if result.stdout.strip() else None
        except ValueError:
            raise MachineError(f"{self.connection.name}: etcdctl answered no JSON") from None

    def members(self) -> list[Member]:
        document = self._json("member list -w json", timeout=ETCD_ANSWER_TIMEOUT, asks=True)
        return [_member(m) for m in document.get("members", [])]

    def move_leader(self, transferee: Member, leader_endpoint: str) -> None:
        """Leadership to `transferee`, asked of the leader alone: etcdctl asks every
        endpoint given for its status first and gives up at the first that fails
        (etcdctl/ctlv3/command/move_leader_command.go, v3.5); the ID is hex there."""
        self._json(f"move-leader {transferee.hex_id} -w json", [leader_endpoint])

    def remove_member(self, member: Member) -> None:
        self._json(f"member remove {member.hex_id} -w json")

    def status(self, endpoints: list[str]) -> list[EndpointStatus]:
        """etcdctl asks for endpoints' status one after another, each with the whole command
        timeout (epStatusCommandFunc in etcdctl/ctlv3/command/ep_command.go): one etcdctl
        per endpoint instead, all at once, so that dead members cost one wait, not one each."""
        chosen = endpoints or self.endpoints
        with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
            documents = list(
                pool.map(
                    lambda e: self._json(
                        "endpoint status -w json", [e], False, ETCD_ANSWER_TIMEOUT, asks=True
                    ),
                    chosen,
                )
            )
        return [parse_status(entry) for document in documents for entry in document or []]

    def health(self, endpoints: list[str], polled: bool = False) -> list[EndpointHealth]:
        """etcdctl asks every endpoint at once (one client each). `polled` is one poll of a
        wait, which logs what changed: it logs nothing, and waits for each answer only as
        long as for the connection."""
        document = (
            self._json(
                "endpoint health -w json",
                endpoints,
                False,
                ETCD_POLL_TIMEOUT if polled else ETCD_ANSWER_TIMEOUT,
                asks=True,
                quiet=polled,
            )
            or []
        )
        return [
            EndpointHealth(
                endpoint=e.get("endpoint", ""),
                healthy=bool(e.get("health")),
                took=e.get("took", ""),
                error=e.get("error", ""),
            )
            for e in document
        ]

    def alarms(self) -> list[Alarm]:
        document = self._json("alarm list -w json", timeout=ETCD_ANSWER_TIMEOUT, asks=True) or {}
        return [
            Alarm(int(a.get("memberID", 0)), ALARMS.get(a.get("alarm", 0), str(a.get("alarm"))))
            for a in document.get("alarms", [])
        ]

    def disarm(self) -> None:
        self._json("alarm disarm -w json")

    def defragment(self, endpoint: str) -> None:
        result = self.connection.run(
            self._command("defrag", [endpoint], timeout=1800), check=False, timeout=1900
        )
        if not result.ok:
            raise MachineError(
                f"{self.connection.name}: defragmenting {endpoint} failed: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def snapshot_save_streaming(self, endpoint: str, path: str) -> str:
        """A command that saves a snapshot to `path` and, while etcdctl writes it, streams
        it to stdout (so a copy elsewhere is done when the save is); exits with etcdctl's
        status, its messages on stderr. The stream must be checked against the file."""
        file, part, err = (shlex.quote(path + suffix) for suffix in ("", ".part", ".err"))
        save = self._command(f"snapshot save {file}", [endpoint], timeout=3600)
        return (
            f"rm -f {file} {part}; {save} >/dev/null 2>{err} & pid=$!; "
            f"while [ ! -e {part} ] && [ ! -e {file} ] && kill -0 $pid 2>/dev/null; "
            "do sleep 0.05; done; "
            f"{{ tail -c +1 -s 0.1 -f --pid=$pid {part} 2>/dev/null || cat {file} 2>/dev/null; }}; "
            f"wait $pid; rc=$?; cat {err} >&2; rm -f {err}; exit $rc"
        )

    def snapshot_status(self, path: str) -> SnapshotStatus:
        tool = self.tools.offline if self.tools else ETCDCTL
        prefix = f"ETCDCTL_API=3 {ETCDCTL}" if tool == ETCDCTL else ETCDUTL
        result = self.connection.ask(
            f"{prefix} snapshot status {shlex.quote(path)} -w json", check=False, timeout=1800
        )
        if not result.ok:
            tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
            raise MachineError(f"{self.connection.name}: {tool} snapshot status failed: {tail}")
        try:
            return parse_snapshot_status(json.loads(result.stdout))
        except (ValueError, KeyError):
            raise MachineError(
                f"{self.connection.name}: {tool} snapshot status answered no JSON"
            ) from None

    def snapshot_restore(
        self,
        path: str,
        data_dir: str,
        name: str,
        initial_cluster: str,
        token: str,
        peer: str,
        bump_revision: int = 0,
    ) -> None:
        """Restore a snapshot file into a new data directory (which must not exist).
        `bump_revision` needs an etcdutl that has --bump-revision (see tools.py)."""
        tool = self.tools.offline if self.tools else ETCDCTL
        prefix = f"ETCDCTL_API=3 {ETCDCTL}" if tool == ETCDCTL else ETCDUTL
        extra = f" --bump-revision {bump_revision} --mark-compacted" if bump_revision else ""
        result = self.connection.run(
            f"{prefix} snapshot restore {shlex.quote(path)} --data-dir {shlex.quote(data_dir)} "
            f"--name {shlex.quote(name)} --initial-cluster {shlex.quote(initial_cluster)} "
            f"--initial-cluster-token {shlex.quote(token)} "
            f"--initial-advertise-peer-urls {shlex.quote(peer)}{extra}",
            check=False,
            timeout=3600,
        )
        if not result.ok:
            tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
            raise MachineError(f"{self.connection.name}: {tool} snapshot restore failed: {tail}")

    def member_add(self, name: str, peer: str) -> list[Member]:
        """Add a voting member; the answer lists every member, the new one included."""
        document = self._json(
            f"member add {shlex.quote(name)} --peer-urls={shlex.quote(peer)} -w json"
        )
        return [_member(m) for m in document.get("members", [])]

    def count_keys(self, revision: int = 0, endpoint: str | None = None) -> int:
        """Live keys (not their history) at `revision` (0: now)."""
        # A range's response counts every key even when limited to one (etcd 3.4 has no
        # --count-only).
        at = f" --rev={revision}" if revision else ""
        document = self._json(
            f"get '' --prefix --keys-only --limit=1{at} -w json",
            [endpoint] if endpoint else None,
            asks=True,
        )
        return int((document or {}).get("count", 0))

    def hash_kv(self, endpoint: str, revision: int) -> int:
        """The hash of the key space up to `revision` on one member."""
        document = (
            self._json(
                f"endpoint hashkv --rev={revision} -w json", [endpoint], timeout=600, asks=True
            )
            or []
        )
        return int(document[0]["HashKV"]["hash"])


def _member(m: dict[str, Any]) -> Member:
    return Member(
        id=int(m["ID"]),
        name=m.get("name", ""),
        peer_urls=tuple(m.get("peerURLs", [])),
        client_urls=tuple(m.get("clientURLs", [])),
        learner=bool(m.get("isLearner")),
    )


def parse_snapshot_status(document: dict[str, Any]) -> SnapshotStatus:
    return SnapshotStatus(
        hash=int(document["hash"]),
        revision=int(document["revision"]),
        total_keys=int(document["totalKey"]),
        total_size=int(document["totalSize"]),
    )


def parse_status(entry: dict[str, Any]) -> EndpointStatus:
    status = entry.get("Status", {})
    header = status.get("header", {})
    return EndpointStatus(
        endpoint=entry.get("Endpoint", ""),
        member_id=int(header.get("member_id", 0)),
        leader_id=int(status.get("leader", 0)),
        version=status.get("version", ""),
        db_size=int(status.get("dbSize", 0)),
        db_size_in_use=int(status.get("dbSizeInUse", 0)),
        revision=int(header.get("revision", 0)),
        raft_index=int(status.get("raftIndex", 0)),
        raft_term=int(status.get("raftTerm", 0)),
        errors=tuple(status.get("errors", []) or []),
    )


def member_by_peer_url(members: list[Member], ip: str) -> Member | None:
    """The member whose peer URLs include this address's exact peer URL."""
    url = peer_url(ip)
    return next((m for m in members if url in m.peer_urls), None)


def find_member(members: list[Member], name: str, ip: str) -> Member | None:
    """The member of a host: by its exact peer URL, else by its exact name."""
    url = peer_url(ip)
    return next((m for m in members if url in m.peer_urls), None) or next(
        (m for m in members if m.name == name), None
    )
