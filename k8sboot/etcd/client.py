"""etcdctl on a host: members, health, status, alarms, defragmentation, snapshots.

Every call parses `-w json`, never text (etcd 3.4 prints some plain results on stderr).
Member IDs arrive as decimal numbers and are given back in hex, the form `member remove`
takes. Members are matched by ID and peer URL, never by a piece of an address.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from k8sboot.errors import MachineError
from k8sboot.transport import Connection

CLIENT_PORT = 2379
PEER_PORT = 2380


@dataclass(frozen=True)
class EtcdTLS:
    """Where a host keeps the etcd CA and a client certificate signed by it."""

    cacert: str
    cert: str
    key: str


# kubeadm's stacked etcd: certificates under /etc/kubernetes/pki/etcd.
STACKED_TLS = EtcdTLS(
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "/etc/kubernetes/pki/etcd/healthcheck-client.key",
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

    @property
    def is_leader(self) -> bool:
        return self.member_id == self.leader_id


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
    """etcdctl (API v3) run as root on `connection`'s host, against `endpoints`."""

    def __init__(self, connection: Connection, tls: EtcdTLS, endpoints: list[str]):
        self.connection = connection
        self.tls = tls
        self.endpoints = endpoints

    def _command(self, args: str, endpoints: list[str] | None = None) -> str:
        chosen = ",".join(endpoints or self.endpoints)
        return (
            f"ETCDCTL_API=3 etcdctl --endpoints={shlex.quote(chosen)} "
            f"--cacert={self.tls.cacert} --cert={self.tls.cert} --key={self.tls.key} "
            f"--dial-timeout=5s --command-timeout=30s {args}"
        )

    def _json(self, args: str, endpoints: list[str] | None = None, check: bool = True) -> Any:
        result = self.connection.run(self._command(args, endpoints), check=False, timeout=120)
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
        document = self._json("member list -w json")
        return [
            Member(
                id=int(m["ID"]),
                name=m.get("name", ""),
                peer_urls=tuple(m.get("peerURLs", [])),
                client_urls=tuple(m.get("clientURLs", [])),
                learner=bool(m.get("isLearner")),
            )
            for m in document.get("members", [])
        ]

    def remove_member(self, member: Member) -> None:
        self._json(f"member remove {member.hex_id} -w json")

    def status(self, endpoints: list[str]) -> list[EndpointStatus]:
        document = self._json("endpoint status -w json", endpoints, check=False) or []
        return [parse_status(entry) for entry in document]

    def health(self, endpoints: list[str]) -> list[EndpointHealth]:
        document = self._json("endpoint health -w json", endpoints, check=False) or []
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
        document = self._json("alarm list -w json") or {}
        return [
            Alarm(int(a.get("memberID", 0)), ALARMS.get(a.get("alarm", 0), str(a.get("alarm"))))
            for a in document.get("alarms", [])
        ]

    def disarm(self) -> None:
        self._json("alarm disarm -w json")

    def defragment(self, endpoint: str) -> None:
        result = self.connection.run(self._command("defrag", [endpoint]), check=False, timeout=600)
        if not result.ok:
            raise MachineError(
                f"{self.connection.name}: defragmenting {endpoint} failed: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def snapshot_save(self, endpoint: str, path: str) -> None:
        """etcd 3.4 takes exactly one endpoint for a snapshot."""
        result = self.connection.run(
            self._command(f"snapshot save {shlex.quote(path)}", [endpoint]),
            check=False,
            timeout=3600,
        )
        if not result.ok:
            raise MachineError(
                f"{self.connection.name}: snapshot from {endpoint} failed: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )

    def snapshot_status(self, path: str) -> SnapshotStatus:
        result = self.connection.run(
            f"ETCDCTL_API=3 etcdctl snapshot status {shlex.quote(path)} -w json", timeout=600
        )
        document = json.loads(result.stdout)
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


def find_member(members: list[Member], name: str, ip: str) -> Member | None:
    """The member of a host: by its exact peer URL, else by its exact name."""
    url = peer_url(ip)
    return next((m for m in members if url in m.peer_urls), None) or next(
        (m for m in members if m.name == name), None
    )
