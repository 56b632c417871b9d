"""Actions of the etcd steps: external etcd (certificates, service, members), snapshots and
the catalogue, restores, maintenance. Carried out by k8sboot/executor/etcd*.py; no
description holds a secret (keys are generated when an action runs, never planned)."""

from __future__ import annotations

from dataclasses import dataclass

from k8sboot.actions import Action, OnHost
from k8sboot.etcd.restore_record import kept_dir
from k8sboot.render import RenderedFile


def _hosts(names: tuple[str, ...]) -> str:
    return ", ".join(names)


# -- external etcd ------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueEtcdCerts(OnHost):
    """Write certificates signed by k8sboot's etcd CA (and the CA certificate) to a host;
    restart its etcd member afterwards when it already runs."""

    certs: tuple[str, ...]  # names from topology.external_certs
    ca: bool
    reasons: tuple[str, ...] = ()
    restart_etcd: bool = False

    def describe(self) -> str:
        what = [f"{name} certificate" for name in self.certs]
        if self.ca:
            what.insert(0, "the etcd CA certificate")
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        then = ", then restart etcd" if self.restart_etcd else ""
        return f"write {', '.join(what)}{why}{then}"


@dataclass(frozen=True)
class BootstrapEtcd(Action):
    """Configure and start every member of a new external etcd cluster together."""

    members: tuple[str, ...]  # the ones to start
    files: tuple[tuple[str, tuple[RenderedFile, ...]], ...]  # (host, files)
    initial: tuple[str, ...] = ()  # every member of the first bootstrap

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.members

    def describe(self) -> str:
        if set(self.members) == set(self.initial):
            return f"start a new etcd cluster on {_hosts(self.members)}"
        return (
            f"start etcd on {_hosts(self.members)}, with the running members of the cluster "
            f"first started on {_hosts(self.initial)}"
        )


@dataclass(frozen=True)
class AddEtcdMember(Action):
    """Add a member to a running external etcd cluster through a healthy member, then
    configure and start it (one member at a time)."""

    host: str
    via: str
    files: tuple[RenderedFile, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host, self.via)

    def describe(self) -> str:
        return f"add {self.host} as an etcd member (through {self.via}), then start it"


@dataclass(frozen=True)
class ConfigureEtcd(OnHost):
    """Rewrite a member's configuration and restart it, or just start it; waits until the
    cluster is healthy again (members are restarted one at a time)."""

    files: tuple[RenderedFile, ...]
    restart: bool
    why: str = ""

    def describe(self) -> str:
        paths = ", ".join(str(f.path) for f in self.files)
        verb = "restart" if self.restart else "start"
        why = f" ({self.why})" if self.why else ""
        return f"write {paths}, then {verb} etcd{why}" if paths else f"{verb} etcd{why}"


@dataclass(frozen=True)
class PrepareRestoreTarget(OnHost):
    """Write a member's configuration and unit, and leave etcd stopped and disabled: its
    data comes from `k8sboot etcd restore --onto`, which starts it."""

    files: tuple[RenderedFile, ...]
    onto: tuple[str, ...]  # every host the restore is to go onto

    def describe(self) -> str:
        paths = ", ".join(str(f.path) for f in self.files)
        return (
            f"write {paths}; etcd stays stopped until `k8sboot etcd restore BACKUP --onto "
            f"{','.join(self.onto)}`"
        )


# -- snapshots and the catalogue ----------------------------------------------------------


@dataclass(frozen=True)
class SaveSnapshot(OnHost):
    """Snapshot one member on its own host, verify it, bring it into the catalogue with a
    manifest (encrypted when a key is configured) and remove the file on the host."""

    endpoint: str
    member: str  # its name, or hex ID
    why: str
    origin: str = "backup"

    def describe(self) -> str:
        return f"snapshot member {self.member} ({self.endpoint}; {self.why}) into the catalogue"


@dataclass(frozen=True)
class PruneBackups(Action):
    location: str
    policy: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"apply retention ({self.policy}) to {self.location}"


@dataclass(frozen=True)
class TestRestore(OnHost):
    """Restore a backup into a scratch directory (0700) on a host, run a throw-away etcd on
    it with unix sockets in that directory, compare revision, keys and hash with the
    manifest, remove it all again."""

    backup: str
    location: str  # of the catalogue (or directory) that holds it

    def describe(self) -> str:
        return f"test-restore {self.backup} into a throw-away etcd"


@dataclass(frozen=True)
class RecordIntegrity(Action):
    """Record in a backup's manifest how the check of its stored file went (what `etcd
    list` shows); a failed check then fails the run with its reason."""

    location: str  # of the catalogue (or directory) that holds it
    backup: str
    checked: str  # when (ISO 8601)
    failure: str = ""  # why the check failed; empty when it passed

    @property
    def hosts(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        if self.failure:
            return f"record that {self.backup} failed its check: {self.failure}"
        return f"record that {self.backup} passes its check again"


@dataclass(frozen=True)
class PullSnapshots(OnHost):
    files: tuple[str, ...]

    def describe(self) -> str:
        return f"pull {len(self.files)} scheduled snapshot(s) into the catalogue"


# -- maintenance --------------------------------------------------------------------------


@dataclass(frozen=True)
class Defragment(OnHost):
    host: str  # where etcdctl runs
    endpoint: str
    member: str
    role: str  # follower or leader
    pause: float  # seconds to wait afterwards, before the next member

    def describe(self) -> str:
        return f"defragment {self.role} {self.member} ({self.endpoint})"


@dataclass(frozen=True)
class DisarmAlarms(OnHost):
    alarms: tuple[str, ...]

    def describe(self) -> str:
        return f"disarm alarms: {', '.join(self.alarms)}"


# -- restore ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A host that receives the snapshot, and the member it becomes."""

    host: str
    name: str
    peer_url: str


@dataclass(frozen=True)
class StageRestore(Action):
    """Before anything stops: copy the backup to every target (decrypted on the way),
    check it there, and restore it into a scratch directory beside the data directory,
    as a new cluster (new token, the targets as its initial members)."""

    backup: str
    location: str  # of the catalogue (or directory) that holds it
    targets: tuple[Target, ...]
    tag: str  # names the scratch and set-aside directories
    bump_revision: int  # 0 when the hosts' tools cannot

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(t.host for t in self.targets)

    def describe(self) -> str:
        bump = (
            f", --bump-revision {self.bump_revision} --mark-compacted"
            if self.bump_revision
            else " (no --bump-revision: the tools lack it)"
        )
        initial = ",".join(f"{t.name}={t.peer_url}" for t in self.targets)
        return (
            f"copy {self.backup} to {_hosts(self.hosts)}, check it, restore it beside the data "
            f"directory as a new cluster {initial}{bump}"
        )


@dataclass(frozen=True)
class RecordRestore(Action):
    """Record the restore as in progress on the operator's machine, before anything stops:
    from then on it is finished or rolled back, and `up`, `reset` and `node remove` refuse."""

    backup: str
    location: str
    targets: tuple[str, ...]
    apiservers: tuple[str, ...]
    external: bool
    etcd_servers: str
    tag: str
    since: str  # when it was planned: a pre-restore snapshot taken after is held

    @property
    def hosts(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"record the restore of {self.backup} (tag {self.tag}) as in progress"


@dataclass(frozen=True)
class StopControlPlane(Action):
    """Stop the API servers, then etcd: static pod manifests moved aside (kubeadm), or the
    etcd service stopped (external)."""

    apiservers: tuple[str, ...]
    etcd: tuple[str, ...]
    external: bool
    tag: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.apiservers + self.etcd))

    def describe(self) -> str:
        how = "stop the etcd service" if self.external else "move etcd.yaml aside"
        return (
            f"stop the API servers on {_hosts(self.apiservers)} (move kube-apiserver.yaml "
            f"aside), then etcd on {_hosts(self.etcd)} ({how})"
        )


@dataclass(frozen=True)
class SwapDataDirs(Action):
    """Set each target's member directory aside (kept, never deleted, outside what kubeadm
    manages) and move the restored one in its place. Done already on a host: left as is."""

    targets: tuple[str, ...]
    tag: str
    external: bool

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.targets

    def describe(self) -> str:
        return (
            f"on {_hosts(self.targets)}: keep the old data in {kept_dir(self.tag)}, put the "
            "restored data in place"
        )


@dataclass(frozen=True)
class ReissueMemberCerts(OnHost):
    """Re-issue kubeadm's etcd server and peer certificates of a control plane for its
    address, signed by the cluster's etcd CA (stacked etcd onto new addresses)."""

    ca_host: str
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"re-issue etcd server and peer certificates ({'; '.join(self.reasons)})"


@dataclass(frozen=True)
class StartRestoredEtcd(Action):
    """Start etcd on the targets on the restored data and wait for a healthy cluster."""

    etcd: tuple[str, ...]
    external: bool
    tag: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.etcd

    def describe(self) -> str:
        return f"start etcd on {_hosts(self.etcd)} and wait for a healthy cluster"


@dataclass(frozen=True)
class StartApiServers(Action):
    """Point the API servers at the etcd members (external etcd onto new hosts), start them
    and wait for the API."""

    apiservers: tuple[str, ...]
    tag: str
    etcd_servers: str  # for the API servers' --etcd-servers; "" keeps theirs
    original: bool = False  # a rollback: their manifests as they were before the restore

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.apiservers

    def describe(self) -> str:
        point = f" with --etcd-servers={self.etcd_servers}" if self.etcd_servers else ""
        if self.original:
            point = " as they were before the restore"
        return f"start the API servers on {_hosts(self.apiservers)}{point}, wait for the API"


@dataclass(frozen=True)
class UpdateKubeadmConfig(OnHost):
    """Bring kubeadm's stored ClusterConfiguration (kube-system/kubeadm-config) and the
    cluster-info discovery ConfigMap to the cluster as it now is."""

    changes: tuple[str, ...]

    def describe(self) -> str:
        return f"update kubeadm's stored configuration: {'; '.join(self.changes)}"


@dataclass(frozen=True)
class CheckRestored(OnHost):
    """etcd healthy, the API answering, the snapshot's Nodes back; kubelets whose Node the
    snapshot lacks are restarted so that they register again."""

    backup: str
    location: str

    def describe(self) -> str:
        return f"check etcd health and that the objects of {self.backup} are back"


@dataclass(frozen=True)
class ConfirmRestore(Action):
    """The restore (or its rollback) is done: the staging directories go (the data from
    before stays in its kept directory), and the record of the restore in progress."""

    tag: str
    staged_on: tuple[str, ...]
    rolled_back: bool = False

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.staged_on

    def describe(self) -> str:
        what = "rollback" if self.rolled_back else "restore"
        return f"confirm the {what} (tag {self.tag}): remove its staging directories"


@dataclass(frozen=True)
class RollBackData(Action):
    """Put back on each target the data from before the restore (kept in the tag's
    directory); the restored data is set aside beside it, not deleted."""

    targets: tuple[str, ...]
    tag: str
    external: bool

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.targets

    def describe(self) -> str:
        return (
            f"on {_hosts(self.targets)}: put back the data from before the restore (from "
            f"{kept_dir(self.tag)}); the restored data is kept beside it"
        )
