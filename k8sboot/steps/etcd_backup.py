"""etcd snapshots into the catalogue: backup (a healthy follower by default), retention,
test restores, the scheduled snapshots' timers and pulling their files."""

from __future__ import annotations

import shlex

from k8sboot.actions import Action, RunCommands, WriteFiles
from k8sboot.errors import MachineError, UserError
from k8sboot.etcd import topology
from k8sboot.etcd.actions import (
    PruneBackups,
    PullSnapshots,
    RecordIntegrity,
    SaveSnapshot,
    TestRestore,
)
from k8sboot.etcd.archive import CorruptBackup, Key, check_file
from k8sboot.etcd.authenticity import why_untrusted
from k8sboot.etcd.catalogue import Manifest, Store, names_taken, now, open_store
from k8sboot.etcd.client import Member
from k8sboot.etcd.files import TIMER_UNIT, snapshot_files
from k8sboot.etcd.observe import EtcdView, host_for, observe
from k8sboot.etcd.scheduled import SEALED_SUFFIX, recipient, sealed_name
from k8sboot.host_state import ETCD_SNAPSHOT_DIR
from k8sboot.spec import Cluster, Host
from k8sboot.steps.base import Context, Step
from k8sboot.steps.etcd_external import RESET_TIMER, scheduled_leftovers
from k8sboot.steps.files import changed


class VerifyFailed(MachineError):
    """A backup is not what its manifest says."""


class Unauthenticated(VerifyFailed):
    """A manifest the configured key does not authenticate. `etcd list` finds it again
    from the key each time: nothing is recorded in the manifest itself."""


def policy(cluster: Cluster) -> str:
    r = cluster.backup.retention
    return f"last {r.last}, hourly {r.hourly}, daily {r.daily}, weekly {r.weekly}"


def pick_member(ctx: Context, view: EtcdView, wanted: str | None) -> tuple[Member, Host, str]:
    """The member to snapshot and its host: `wanted` (a member's name or hex ID), else a
    healthy follower (sparing the leader), else the leader."""
    usable = []
    for member in view.members:
        host = host_for(ctx, member)
        if member.learner or host is None or host.name not in ctx.facts.hosts:
            continue
        usable.append((member, host))
    if wanted is not None:
        chosen = [m for m in view.members if wanted in (m.name, m.hex_id)]
        if not chosen:
            names = ", ".join(f"{m.name} ({m.hex_id})" for m in view.members)
            raise UserError(f"--member {wanted}: no such etcd member; members: {names}")
        member = chosen[0]
        host = host_for(ctx, member)
        if host is None or host.name not in ctx.facts.hosts:
            raise MachineError(f"member {wanted}: no host of the cluster file reachable for it")
        if not view.is_healthy(member):
            raise MachineError(f"member {wanted} is not healthy; choose another with --member")
        return member, host, "chosen with --member"
    followers = [(m, h) for m, h in usable if view.is_healthy(m) and m.id != view.leader_id]
    if followers:
        return (*followers[0], "a healthy follower")
    leaders = [(m, h) for m, h in usable if view.is_healthy(m)]
    if leaders:
        return (*leaders[0], "the leader: no healthy follower")
    raise MachineError(
        "no healthy etcd member whose host can be reached: " + "; ".join(view.problems())
    )


def snapshot_action(ctx: Context, member: str | None, origin: str) -> list[Action]:
    view = observe(ctx)
    if not view.answers:
        raise MachineError("etcd does not answer: " + "; ".join(view.problems()))
    chosen, host, why = pick_member(ctx, view, member)
    endpoint = view.endpoint_of(chosen) or topology.endpoint(host)
    return [SaveSnapshot(host.name, endpoint, chosen.name or chosen.hex_id, why, origin)]


class EtcdBackup(Step):
    title = "etcd backup"

    def __init__(self, member: str | None = None):
        self.member = member

    def plan(self, ctx: Context) -> list[Action]:
        store = open_store(ctx.cluster)
        if not ctx.api.answers:
            ctx.notes.append(
                f"the backup records no Nodes: the API on {ctx.api.host} does not answer "
                f"({ctx.api.reason}), so a restore of it cannot check that they are back"
            )
        return [
            *snapshot_action(ctx, self.member, "backup"),
            PruneBackups(store.location, policy(ctx.cluster)),
        ]


def local_check(store: Store, manifest: Manifest, cluster: Cluster) -> None:
    """The backup's manifest authenticated (check_authentic), then the stored file against
    it: size, sha256, and (decrypted) the snapshot's own checksum and sha256. Raises
    VerifyFailed."""
    key = check_authentic(store, manifest, cluster)
    name = manifest.file["name"]
    size = store.file_size(name)
    if size is None:
        raise VerifyFailed(f"backup {manifest.name}: {name} is missing from {store.location}")
    if size != manifest.file["size"]:
        raise VerifyFailed(
            f"backup {manifest.name} is corrupt: {name} has {size} bytes, its manifest says "
            f"{manifest.file['size']} (truncated or changed)"
        )
    with store.local_copy(name) as path:
        try:
            found = check_file(path, key, encrypted=manifest.encryption is not None)
        except CorruptBackup as error:
            raise VerifyFailed(
                f"backup {manifest.name} is corrupt or unreadable: {error}"
            ) from None
    if found.file_sha256 != manifest.file["sha256"]:
        raise VerifyFailed(
            f"backup {manifest.name} is corrupt: the sha256 of {name} differs from its manifest"
        )
    if not found.trailer_ok or found.sha256 != manifest.snapshot["sha256"]:
        raise VerifyFailed(
            f"backup {manifest.name} is corrupt: the snapshot fails etcd's own checksum"
        )


def check_authentic(store: Store, manifest: Manifest, cluster: Cluster) -> Key | None:
    """The configured backup key, once it has authenticated the manifest (authenticity.py):
    with a key configured or the manifest saying encrypted, only an encrypted backup whose
    manifest MAC matches passes. Raises Unauthenticated, or MachineError when the
    configuration lacks the backup's key (not the backup's fault: nothing is recorded)."""
    from k8sboot.executor.etcd_backup import backup_key  # the key is read when used

    key = backup_key(cluster, store)
    if manifest.encryption:
        wanted = manifest.encryption.get("key_id", "?")
        if key is None:
            raise MachineError(
                f"backup {manifest.name} is encrypted (key {wanted}); set "
                "backup.encryptionKeyFile to its key"
            )
        if key.id != wanted:
            raise MachineError(
                f"backup {manifest.name} was encrypted with another key ({wanted}); "
                f"backup.encryptionKeyFile is key {key.id}"
            )
    untrusted = why_untrusted(manifest, key)
    if untrusted:
        raise Unauthenticated(f"backup {manifest.name} {untrusted}")
    return key


def test_host(ctx: Context) -> Host:
    """Where a throw-away etcd can run: a reachable member (it has etcd's binary, or runs
    etcd, whose binary is borrowed)."""
    for host in topology.members(ctx.cluster):
        if host.name in ctx.facts.hosts:
            return host
    raise MachineError("no etcd member can be reached over SSH to test-restore on")


class EtcdVerify(Step):
    title = "etcd verify"

    def __init__(self, store: Store, manifest: Manifest):
        self.store = store
        self.manifest = manifest

    def plan(self, ctx: Context) -> list[Action]:
        name, location = self.manifest.name, self.store.location
        try:
            local_check(self.store, self.manifest, ctx.cluster)
        except Unauthenticated:
            raise
        except VerifyFailed as error:  # recorded as FAILED, and the run fails
            return [RecordIntegrity(location, name, now().isoformat(), str(error))]
        actions: list[Action] = []
        if self.manifest.verification.get("integrity") != "ok":  # failed before, passes now
            actions.append(RecordIntegrity(location, name, now().isoformat()))
        return [*actions, TestRestore(test_host(ctx).name, name, location)]


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
