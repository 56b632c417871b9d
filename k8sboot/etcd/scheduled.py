"""Scheduled snapshots at rest on the control planes: encrypted there with age
(https://age-encryption.org/v1) to an X25519 recipient, so that nothing on a node can
decrypt them; `etcd pull` decrypts them with the matching identity.

The identity is derived from the backup key (backup.encryptionKeyFile), so there is no
second secret to keep: its 32 bytes are HKDF-SHA256(backup key, no salt, info
IDENTITY_INFO), written as age writes identities (Bech32, "AGE-SECRET-KEY-1..."). Its
recipient ("age1...") is rendered into the host's snapshot script.

Next to each NAME.db.age the script leaves NAME.db.status: the line `etcdutl snapshot
status -w json` printed for the plain snapshot, then the plain snapshot's sha256 (hex).
The status cannot be read from an encrypted file on the host, and the sha256 ties it to
what the operator decrypts.
"""

from __future__ import annotations

import json
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyrage
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from k8sboot.actions import Action, OnHost, RunCommands, WriteFiles
from k8sboot.errors import MachineError, UserError
from k8sboot.etcd import files as etcd_files
from k8sboot.etcd.archive import ALGORITHM, Key, SnapshotSink, backup_key, load_key
from k8sboot.etcd.authenticity import seal
from k8sboot.etcd.backup import (
    PruneBackups,
    check_and_fetch,
    ctl_for,
    policy,
    verify_sink,
)
from k8sboot.etcd.catalogue import (
    Manifest,
    Store,
    listed_or_removed,
    names_taken,
    now,
)
from k8sboot.etcd.checks import VerifyFailed
from k8sboot.etcd.client import SnapshotStatus, parse_snapshot_status
from k8sboot.etcd.external import RESET_TIMER, scheduled_leftovers
from k8sboot.etcd.files import TIMER_UNIT, snapshot_files
from k8sboot.etcd.stores import open_store
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import Wanted
from k8sboot.host_state import ETCD_SNAPSHOT_DIR
from k8sboot.spec import Cluster, Host
from k8sboot.state import create_secret_file
from k8sboot.step import Context, Step, changed
from k8sboot.transport import Connection

IDENTITY_INFO = b"k8sboot etcd scheduled snapshots age identity v1"


SEALED_SUFFIX = ".db.age"


STATUS_SUFFIX = ".db.status"


class Undecryptable(Exception):
    """A sealed snapshot the derived identity cannot open (another key, or damaged)."""


_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32(hrp: str, data: bytes) -> str:
    """Bech32 (BIP 173) with age's rule of no length limit; checked against pyrage's own
    encoding in the tests."""
    words, acc, bits = [], 0, 0
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    chk = 1
    for value in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + words + [0] * 6:
        top, chk = chk >> 25, ((chk & 0x1FFFFFF) << 5) ^ value
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= gen if (top >> i) & 1 else 0
    chk ^= 1
    checksum = [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def identity_of(key: Key) -> str:
    """The age identity (a secret) that opens the scheduled snapshots sealed for `key`."""
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=IDENTITY_INFO).derive(
        key.material
    )
    return _bech32("age-secret-key-", secret).upper()


def recipient_of(key: Key) -> str:
    return str(pyrage.x25519.Identity.from_str(identity_of(key)).to_public())


def cluster_key(cluster: Cluster) -> Key | None:
    path = cluster.backup.encryption_key_file
    return load_key(path) if path is not None else None


def recipient(cluster: Cluster) -> str | None:
    """The recipient hosts seal scheduled snapshots to; None without a backup key."""
    key = cluster_key(cluster)
    return recipient_of(key) if key else None


def write_identity_file(key: Key, path: Path) -> None:
    """The identity in `path` (0600, never overwriting), for `age -d -i PATH`."""
    create_secret_file(
        path,
        "# age identity of the scheduled etcd snapshots (k8sboot etcd age-identity)\n"
        f"# recipient: {recipient_of(key)}\n{identity_of(key)}\n",
    )


def sealed_name(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(SEALED_SUFFIX)


def status_path(sealed: str) -> str:
    return sealed.removesuffix(SEALED_SUFFIX) + STATUS_SUFFIX


def parse_status_file(text: str) -> tuple[SnapshotStatus, str]:
    """(snapshot status, plain sha256) from a NAME.db.status; ValueError if malformed."""
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise ValueError("not two lines")
    digest = lines[1].strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("no sha256 on its second line")
    try:
        return parse_snapshot_status(json.loads(lines[0])), digest
    except (KeyError, TypeError):
        raise ValueError("no snapshot status on its first line") from None


def decrypt(sealed: BinaryIO, out, key: Key) -> None:
    """Write the plain snapshot in `sealed` (an age file) to `out`. Raises Undecryptable."""
    identity = pyrage.x25519.Identity.from_str(identity_of(key))
    try:
        pyrage.decrypt_io(sealed, out, [identity])
    except pyrage.DecryptError as error:
        raise Undecryptable(str(error)) from None


# Debian's and Ubuntu's package of age (https://age-encryption.org), the tool hosts
# encrypt scheduled snapshots with; the package cache is refreshed only when it lacks it.
INSTALL_AGE = (
    "export DEBIAN_FRONTEND=noninteractive; "
    "apt-get install -y --no-install-recommends age || "
    "{ apt-get update && apt-get install -y --no-install-recommends age; }"
)


class EtcdSchedule(Step):
    """backup.schedule as a systemd timer on every control plane (snapshots with local
    retention, encrypted to an age recipient when backups are encrypted); when the
    schedule is unset, no timer and no snapshots left on the hosts."""

    title = "etcd snapshot schedule"

    def wants(self, cluster: Cluster) -> Wanted:
        return etcd_files.wanted(cluster)

    def plan(self, ctx: Context) -> list[Action]:
        cluster = ctx.cluster
        actions: list[Action] = []
        hosts = [h for h in cluster.control_planes if h.name in ctx.facts.hosts]
        if cluster.backup.schedule and hosts:
            _check_calendar(ctx, hosts[0], cluster.backup.schedule)
        sealed_to = recipient(cluster) if cluster.backup.schedule else None
        for host in hosts:
            found = ctx.host_facts(host)
            if not cluster.backup.schedule:
                if scheduled_leftovers(found):
                    actions.append(
                        RunCommands(
                            ((host.name, RESET_TIMER),),
                            f"remove the timer and the scheduled snapshots in {ETCD_SNAPSHOT_DIR} "
                            "(`k8sboot etcd pull` first keeps them)",
                        )
                    )
                continue
            if sealed_to and found.package("age") is None:
                actions.append(RunCommands(((host.name, INSTALL_AGE),), "install age (apt-get)"))
            stale = changed(ctx, host, snapshot_files(cluster, host, sealed_to))
            enabled = ctx.view[host.name].ask(
                f"systemctl is-enabled {TIMER_UNIT} && systemctl is-active {TIMER_UNIT}",
                check=False,
                shown=f"is {TIMER_UNIT} on",
            )
            if stale:
                actions.append(WriteFiles(host.name, stale))
            if stale or not enabled.ok:
                actions.append(
                    RunCommands(
                        (
                            (
                                host.name,
                                "systemctl daemon-reload && "
                                f"systemctl enable {TIMER_UNIT} && systemctl restart {TIMER_UNIT}",
                            ),
                        ),
                        f"enable {TIMER_UNIT}",
                    )
                )
        return actions


def _check_calendar(ctx: Context, host: Host, expression: str) -> None:
    result = ctx.view[host.name].ask(
        f"systemd-analyze calendar {shlex.quote(expression)}",
        check=False,
        shown="systemd-analyze calendar",
    )
    if not result.ok:
        raise UserError(
            f"backup.schedule: {expression!r} is not a systemd OnCalendar expression "
            f"({(result.stderr or result.stdout).strip().splitlines()[-1:]})"
        )


class EtcdPull(Step):
    """The scheduled snapshots on the control planes that the catalogue lacks."""

    title = "etcd pull"

    def plan(self, ctx: Context) -> list[Action]:
        store = open_store(ctx.cluster)
        have = names_taken(store)
        ctx.notes.extend(f"warning: {line}" for line in store.unreadable.values())
        actions: list[Action] = []
        for host in ctx.cluster.control_planes:
            if host.name not in ctx.facts.hosts:
                continue
            listing = ctx.view[host.name].ask(
                f"ls -1 {ETCD_SNAPSHOT_DIR}/*.db {ETCD_SNAPSHOT_DIR}/*{SEALED_SUFFIX} "
                "2>/dev/null || true",
                shown="list snapshots",
            )
            files = [
                line.strip()
                for line in listing.stdout.splitlines()
                if line.strip().endswith((".db", SEALED_SUFFIX))
                and pulled_name(line.strip()) not in have
            ]
            if files:
                actions.append(PullSnapshots(host.name, tuple(files)))
        if actions:
            actions.append(PruneBackups(store.location, policy(ctx.cluster)))
        return actions


def pulled_name(path: str) -> str:
    if path.endswith(SEALED_SUFFIX):
        return sealed_name(path)
    return path.rsplit("/", 1)[-1].removesuffix(".db")


@dataclass(frozen=True)
class PullSnapshots(OnHost):
    files: tuple[str, ...]

    def describe(self) -> str:
        return f"pull {len(self.files)} scheduled snapshot(s) into the catalogue"


@handles(PullSnapshots)
def pull(executor: Executor, action: PullSnapshots) -> Outcome:
    ctx = executor.ctx
    cluster = ctx.cluster
    store = open_store(cluster)
    key = backup_key(cluster, store)
    ctl = ctl_for(executor, action.host, [])
    connection = ctl.connection
    names = []
    refused = []
    for remote in action.files:
        name = pulled_name(remote)
        executor.progress(action.host, f"pull {name}")
        file_name = f"{name}.db.enc" if key else f"{name}.db"
        try:
            with listed_or_removed(store, file_name):
                if remote.endswith(SEALED_SUFFIX):
                    found = _fetch_sealed(connection, remote, store, file_name, key)
                else:
                    found = check_and_fetch(executor, ctl, remote, store, file_name, key, None)
                mtime = connection.run(
                    f"stat -c %Y {shlex.quote(remote)}", timeout=30
                ).stdout.strip()
                created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(int(mtime)))
                status: SnapshotStatus = found["status"]
                manifest = Manifest(
                    name=name,
                    cluster=cluster.name,
                    created=created,
                    origin=f"scheduled on {action.host}",
                    kubernetes_version=cluster.kubernetes.version,
                    etcd_version="",
                    source={"host": action.host, "member": "", "endpoint": "", "file": remote},
                    members=[],
                    revision=status.revision,
                    hash=status.hash,
                    total_keys=status.total_keys,
                    total_size=status.total_size,
                    keys=None,
                    hash_kv=None,
                    snapshot={"size": found["size"], "sha256": found["sha256"]},
                    file={
                        "name": file_name,
                        "size": found["stored"],
                        "sha256": found["file_sha256"],
                    },
                    encryption={"algorithm": ALGORITHM, "key_id": key.id} if key else None,
                    verification={"integrity": "ok", "checked": now().isoformat()},
                )
                seal(manifest, key)
                store.write_manifest(manifest)
        except (Undecryptable, VerifyFailed) as error:  # the others may still be good
            refused.append(str(error))
            continue
        names.append(name)
    pulled = f"pulled from {action.host}: {', '.join(names)}"
    if refused:  # what was pulled is in the catalogue: say so with the failure
        raise MachineError((f"{pulled}; " if names else "") + "not pulled: " + "; ".join(refused))
    return Outcome((), notes=(pulled,) if names else ())


def _fetch_sealed(
    connection: Connection, remote: str, store: Store, file_name: str, key: Key | None
) -> dict[str, Any]:
    """Copy a snapshot the schedule encrypted with age (see etcd/scheduled.py) into the
    store: decrypted with the identity derived from `key`, checked against etcd's checksum
    at its end and the sha256 the host recorded beside it, and stored as `check_and_fetch`
    stores a plain one. The host never sees the identity, so `snapshot status` is the one
    the host's script read before it encrypted the snapshot."""
    host = connection.name
    if key is None:
        raise Undecryptable(
            f"{host}: {remote} is encrypted (age); set backup.encryptionKeyFile to the backup "
            "key it was encrypted for"
        )
    beside = status_path(remote)
    read = connection.run(f"cat {shlex.quote(beside)}", check=False, timeout=60)
    try:
        status, plain_sha256 = parse_status_file(read.stdout if read.ok else "")
    except ValueError as error:
        raise VerifyFailed(
            f"{host}: {beside} is missing or not what k8sboot's snapshot script writes ({error})"
        ) from None
    started = time.monotonic()
    with tempfile.TemporaryFile() as sealed:
        connection.run(
            f"cat {shlex.quote(remote)}",
            stdout_to=sealed,  # type: ignore[arg-type]
            timeout=3700,
            shown=f"copy {remote}",
        )
        sealed.seek(0)
        with store.writer(file_name) as out:
            sink = SnapshotSink(out, key)
            try:
                decrypt(sealed, sink, key)
            except Undecryptable as error:
                raise Undecryptable(
                    f"{host}: {remote} does not decrypt with the age identity derived from "
                    f"backup.encryptionKeyFile (key {key.id}): {error}"
                ) from None
            sink.close()
            verify_sink(sink, remote, host)
            if sink.plain_sha.hexdigest() != plain_sha256:
                raise VerifyFailed(
                    f"{host}: {remote} decrypts to another snapshot than the one {beside} "
                    "describes (sha256 differs)"
                )
    if status.total_size <= 0:
        raise VerifyFailed(f"{host}: snapshot status reads an empty snapshot in {beside}")
    return {
        "status": status,
        "size": sink.size,
        "sha256": sink.plain_sha.hexdigest(),
        "stored": sink.stored,
        "file_sha256": sink.file_sha.hexdigest(),
        "fetched": time.monotonic() - started,
    }
