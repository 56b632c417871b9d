"""Planning of the etcd steps: facts (and etcd's answers) in, actions out."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from k8sboot.actions import RunCommands
from k8sboot.cluster.node_setup import NodeSetup
from k8sboot.errors import MachineError, SpecError, UnsafeError, UserError
from k8sboot.etcd import backup as etcd_backup
from k8sboot.etcd import maintenance as etcd_maintenance
from k8sboot.etcd import restore as etcd_restore
from k8sboot.etcd import restore_record, topology
from k8sboot.etcd.backup import EtcdBackup, SaveSnapshot
from k8sboot.etcd.checks import VerifyFailed
from k8sboot.etcd.client import EndpointStatus
from k8sboot.etcd.external import (
    AddEtcdMember,
    BootstrapEtcd,
    ConfigureEtcd,
    EtcdCertificates,
    EtcdMembers,
    IssueEtcdCerts,
    ResetEtcd,
)
from k8sboot.etcd.install import ControlPlaneEtcdTools, ExternalEtcdRelease, InstallEtcd
from k8sboot.etcd.maintenance import Defragment, EtcdDefrag
from k8sboot.etcd.restore import (
    CheckRestored,
    ConfirmRestore,
    EtcdRestore,
    EtcdRollback,
    RecordRestore,
    RollBackData,
    StageRestore,
    StartApiServers,
    StartRestoredEtcd,
    StopControlPlane,
    SwapDataDirs,
    UpdateKubeadmConfig,
)
from k8sboot.etcd.restore_record import RestoreRecord
from k8sboot.etcd.tools import EtcdTools
from k8sboot.kubeadm_node import ETCD_MEMBER_DIR

from .builders import STORE, manifest
from .conftest import load_data
from .factsdata import (
    EXTERNAL_HOSTS,
    context,
    converged_external,
    converged_host,
    etcd_view,
    fresh,
)
from .fakes import FakeConnection


@pytest.fixture
def external(base: dict):
    data = copy.deepcopy(base)
    data["hosts"] = copy.deepcopy(EXTERNAL_HOSTS)
    data["etcd"] = {"topology": "external"}
    return load_data(data).cluster


@pytest.fixture
def stacked(base: dict):
    base = copy.deepcopy(base)
    base["hosts"] = [
        {"name": f"cp{i}", "address": f"10.0.0.1{i}", "roles": ["control-plane"]} for i in (1, 2, 3)
    ] + [{"name": "w1", "address": "10.0.0.21", "roles": ["worker"]}]
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    return load_data(base).cluster


def test_etcd_release_goes_where_etcd_runs(external, stacked, tmp_path: Path) -> None:
    """External members get etcd's release at etcd.version (kubeadm's for the minor by
    default), server and tools; control planes get the tools of the etcd they talk to:
    for stacked etcd the version in kubeadm's etcd manifest, read after init or join when
    the plan comes before them."""
    hosts = {h.name: fresh(h.name, h.ip) for h in external.hosts}
    ctx = context(external, hosts, tmp_path)
    assert NodeSetup().plan(ctx)[0].roles[0] == ("cp1", ("prepare", "containerd", "kube_packages"))
    assert ExternalEtcdRelease().plan(ctx) == [
        InstallEtcd(f"e{i}", "3.5.24", server=True) for i in (1, 2, 3)
    ]
    assert ControlPlaneEtcdTools().plan(ctx) == [InstallEtcd("cp1", "3.5.24")]
    hosts = {h.name: fresh(h.name, h.ip) for h in stacked.hosts}
    ctx = context(stacked, hosts, tmp_path)
    assert ExternalEtcdRelease().plan(ctx) == []
    assert ControlPlaneEtcdTools().plan(ctx) == [InstallEtcd(f"cp{i}", None) for i in (1, 2, 3)]
    assert "of the etcd kubeadm runs here" in InstallEtcd("cp1", None).describe()
    # Converged: the links point into the manifest's version; a new etcd image means new
    # tools on that host only.
    for host in hosts.values():
        host.data["images"] = {"etcd.yaml": "registry.k8s.io/etcd:3.5.21-0"}
        host.data["links"] = {
            tool: f"/opt/k8sboot/etcd/v3.5.21/{tool.rsplit('/', 1)[-1]}"
            for tool in ("/usr/local/bin/etcdctl", "/usr/local/bin/etcdutl")
        }
    assert ControlPlaneEtcdTools().plan(ctx) == []
    hosts["cp2"].data["images"] = {"etcd.yaml": "registry.k8s.io/etcd:3.5.24-0"}
    assert ControlPlaneEtcdTools().plan(ctx) == [InstallEtcd("cp2", "3.5.24")]


def test_etcd_version_and_checksums_are_validated(base: dict) -> None:
    """etcd.version below 3.5.10 cannot bump the revision on restore; a version without a
    pinned checksum needs etcd.download.sha256."""
    base["etcd"] = {"version": "3.5.9"}
    with pytest.raises(SpecError, match=r"etcd.version.*3.5.10"):
        load_data(base)
    base["etcd"] = {"version": "3.5.30"}
    with pytest.raises(SpecError, match=r"etcd.download.sha256: required for etcd 3.5.30"):
        load_data(base)
    base["etcd"] = {"version": "3.5.30", "download": {"sha256": {"amd64": "a" * 64}}}
    cluster = load_data(base).cluster
    assert cluster.etcd_sha256("3.5.30", "amd64") == "a" * 64
    assert cluster.etcd_sha256("3.5.21", "amd64") == (
        "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c"
    )


def test_stacked_clusters_plan_no_external_etcd(stacked, tmp_path: Path) -> None:
    hosts = {h.name: fresh(h.name, h.ip) for h in stacked.hosts}
    ctx = context(stacked, hosts, tmp_path)
    assert EtcdCertificates().plan(ctx) == [] and EtcdMembers().plan(ctx) == []


def test_a_fresh_external_cluster_gets_certificates_then_starts_together(
    external, tmp_path: Path
) -> None:
    hosts = {h.name: fresh(h.name, h.ip) for h in external.hosts}
    ctx = context(external, hosts, tmp_path)
    certs = EtcdCertificates().plan(ctx)
    assert [(a.host, a.certs, a.ca) for a in certs] == [
        ("e1", ("server", "peer", "etcdctl"), True),
        ("e2", ("server", "peer", "etcdctl"), True),
        ("e3", ("server", "peer", "etcdctl"), True),
        ("cp1", ("apiserver-etcd-client",), True),
    ]
    assert all(isinstance(a, IssueEtcdCerts) and not a.restart_etcd for a in certs)
    (start,) = EtcdMembers().plan(ctx)
    assert isinstance(start, BootstrapEtcd) and start.members == ("e1", "e2", "e3")
    files = dict(start.files)["e2"]
    env = next(f for f in files if f.path == topology.EXTERNAL_ENV).content
    assert 'ETCD_NAME="e2"' in env and "https://10.0.0.32:2380" in env
    boot = next(f for f in files if f.path == topology.EXTERNAL_BOOTSTRAP_ENV).content
    assert (
        'ETCD_INITIAL_CLUSTER="e1=https://10.0.0.31:2380,e2=https://10.0.0.32:2380,'
        'e3=https://10.0.0.33:2380"' in boot
    )
    assert 'ETCD_INITIAL_CLUSTER_STATE="new"' in boot


def test_a_converged_external_cluster_plans_nothing(external, tmp_path: Path) -> None:
    ctx = converged_external(external, tmp_path)
    assert EtcdCertificates().plan(ctx) == []
    assert EtcdMembers().plan(ctx) == []


def test_a_failed_member_is_started_alone(external, tmp_path: Path) -> None:
    """One member of a running cluster failed: it is started, and no other member is
    restarted (all three at once would stop the cluster)."""
    ctx = converged_external(external, tmp_path)
    ctx.facts.hosts["e3"].data["services"]["etcd"] = {"active": "failed", "enabled": "enabled"}
    (start,) = EtcdMembers().plan(ctx)
    assert isinstance(start, BootstrapEtcd) and start.members == ("e3",)
    assert start.describe() == (
        "start etcd on e3 (etcd is failed), with the running members of the cluster first "
        "started on e1, e2, e3"
    )


def test_a_disabled_member_is_enabled_and_plan_says_why(external, tmp_path: Path) -> None:
    ctx = converged_external(external, tmp_path)
    ctx.facts.hosts["e3"].data["services"]["etcd"] = {"active": "active", "enabled": "disabled"}
    (start,) = EtcdMembers().plan(ctx)
    assert isinstance(start, ConfigureEtcd)
    assert (start.host, start.restart) == ("e3", False)
    assert start.describe() == "start etcd (etcd is disabled at boot)"


def test_changed_names_reissue_and_restart_one_member(external, tmp_path: Path) -> None:
    ctx = converged_external(external, tmp_path)
    ctx.facts.hosts["e2"].data["services"]["etcd"] = {"active": "active", "enabled": "enabled"}
    ctx.cluster.host("e2").node_ip = "10.0.0.42"  # a new address: new names, new env
    (action,) = EtcdCertificates().plan(ctx)
    assert (action.host, action.certs, action.restart_etcd) == ("e2", ("server", "peer"), True)
    assert "names changed" in action.describe()
    (configure,) = EtcdMembers().plan(ctx)
    assert isinstance(configure, ConfigureEtcd) and configure.host == "e2" and configure.restart


def test_a_new_etcd_host_joins_the_running_cluster(base: dict, tmp_path: Path) -> None:
    base["hosts"] = copy.deepcopy(EXTERNAL_HOSTS)
    base["etcd"] = {"topology": "external"}
    ctx = converged_external(load_data(base).cluster, tmp_path)
    base["hosts"].append({"name": "e4", "address": "10.0.0.34", "roles": ["etcd"]})
    ctx.cluster = load_data(base).cluster
    ctx.facts.hosts["e4"] = fresh("e4", "10.0.0.34")
    assert [a.host for a in EtcdCertificates().plan(ctx)] == ["e4"]
    (add,) = EtcdMembers().plan(ctx)
    assert isinstance(add, AddEtcdMember) and (add.host, add.via) == ("e4", "e1")


def test_an_interrupted_bootstrap_starts_the_rest(external, tmp_path: Path) -> None:
    ctx = converged_external(external, tmp_path)
    for name in ("e2", "e3"):  # only e1 got to start
        data = ctx.facts.hosts[name].data
        data["exists"].pop(ETCD_MEMBER_DIR)
        data["services"]["etcd"] = {"active": "inactive", "enabled": "disabled"}
    (start,) = EtcdMembers().plan(ctx)
    assert isinstance(start, BootstrapEtcd) and start.members == ("e2", "e3")
    assert start.initial == ("e1", "e2", "e3")


def test_reset_removes_external_etcd_and_timers(external, tmp_path: Path) -> None:
    ctx = converged_external(external, tmp_path)
    ctx.facts.hosts["cp1"].data["files"]["/etc/systemd/system/k8sboot-etcd-snapshot.timer"] = "h"
    (action,) = ResetEtcd().plan(ctx)
    assert isinstance(action, RunCommands)
    by_host = dict(action.commands)
    assert set(by_host) == {"e1", "e2", "e3", "cp1"}
    assert "systemctl disable --now etcd" in by_host["e1"]
    assert "k8sboot-etcd-snapshot.timer" in by_host["cp1"]


# -- etcd's answers ------------------------------------------------------------------------


def _ready(cluster, tmp_path: Path):
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    return context(cluster, hosts, tmp_path)


def test_backup_prefers_a_healthy_follower(stacked, tmp_path: Path, monkeypatch) -> None:
    ctx = _ready(stacked, tmp_path)
    monkeypatch.setattr(etcd_backup, "observe", lambda ctx: etcd_view(stacked, leader=1, down=(2,)))
    save, prune = EtcdBackup().plan(ctx)
    assert isinstance(save, SaveSnapshot)
    assert (save.host, save.endpoint, save.why) == (
        "cp3",
        "https://10.0.0.13:2379",
        "a healthy follower",
    )
    assert "last 7, hourly 24, daily 7, weekly 4" in prune.describe()
    save, _ = EtcdBackup("cp1").plan(ctx)
    assert (save.host, save.why) == ("cp1", "chosen with --member")
    with pytest.raises(MachineError, match="not healthy"):
        EtcdBackup("cp2").plan(ctx)
    with pytest.raises(UserError, match="no such etcd member"):
        EtcdBackup("cp9").plan(ctx)


def test_backup_falls_back_to_the_leader_and_needs_quorum(stacked, tmp_path, monkeypatch) -> None:
    ctx = _ready(stacked, tmp_path)
    monkeypatch.setattr(
        etcd_backup, "observe", lambda ctx: etcd_view(stacked, leader=1, down=(2, 3))
    )
    save, _ = EtcdBackup().plan(ctx)
    assert (save.host, save.why) == ("cp1", "the leader: no healthy follower")
    lost = etcd_view(stacked)
    lost.members = []
    monkeypatch.setattr(etcd_backup, "observe", lambda ctx: lost)
    with pytest.raises(MachineError, match="does not answer"):
        EtcdBackup().plan(ctx)


def test_an_unreachable_host_is_never_chosen(stacked, tmp_path, monkeypatch) -> None:
    ctx = _ready(stacked, tmp_path)
    del ctx.facts.hosts["cp2"]
    monkeypatch.setattr(etcd_backup, "observe", lambda ctx: etcd_view(stacked, leader=1))
    save, _ = EtcdBackup().plan(ctx)
    assert save.host == "cp3"


def test_defrag_goes_followers_first_leader_last(stacked, tmp_path, monkeypatch) -> None:
    ctx = _ready(stacked, tmp_path)
    monkeypatch.setattr(etcd_maintenance, "observe", lambda ctx: etcd_view(stacked, leader=2))
    plan = EtcdDefrag(3.0).plan(ctx)
    assert all(isinstance(a, Defragment) for a in plan)
    assert [(a.member, a.role, a.pause) for a in plan] == [
        ("cp1", "follower", 3.0),
        ("cp3", "follower", 3.0),
        ("cp2", "leader", 0.0),
    ]
    monkeypatch.setattr(etcd_maintenance, "observe", lambda ctx: etcd_view(stacked, down=(3,)))
    with pytest.raises(UnsafeError, match="unhealthy") as refused:
        EtcdDefrag(3.0).plan(ctx)
    assert refused.value.exit_code == 3


# -- restore -------------------------------------------------------------------------------


@pytest.fixture
def restoring(stacked, tmp_path: Path, monkeypatch):
    ctx = _ready(stacked, tmp_path)
    monkeypatch.setattr(etcd_restore, "etcd_in_use", lambda ctx, host: in_use(stacked))
    monkeypatch.setattr(etcd_restore, "local_check", lambda *a: None)
    monkeypatch.setattr(etcd_restore, "tools_of", lambda c, h: EtcdTools("3.5.16", "3.5.16", True))
    monkeypatch.setattr(EtcdRestore, "_reissue", lambda self, ctx, targets: [])
    backup = manifest("lab-1", etcd_restore_time())
    backup.members = [
        type(backup.members[0])(f"{i:x}", f"cp{i}", [f"https://10.0.0.1{i}:2380"])
        for i in (1, 2, 3)
    ]
    return ctx, backup


def in_use(cluster, leader: int = 1, answering: tuple[int, ...] = (1, 2, 3)):
    """What an API server host finds: its --etcd-servers, and the statuses of those that
    answer."""
    found = etcd_view(
        cluster, leader=leader, down=tuple(i for i in (1, 2, 3) if i not in answering)
    )
    return [topology.endpoint(h) for h in topology.members(cluster)], list(found.statuses.values())


def etcd_restore_time():
    from datetime import UTC, datetime

    return datetime(2025, 1, 1, tzinfo=UTC)


def test_restore_plan_stages_before_it_stops_anything(restoring) -> None:
    ctx, backup = restoring
    plan = EtcdRestore(STORE, backup).plan(ctx)
    kinds = [type(a) for a in plan]
    assert kinds == [
        SaveSnapshot,
        StageRestore,
        RecordRestore,
        StopControlPlane,
        SwapDataDirs,
        StartRestoredEtcd,
        StartApiServers,
        UpdateKubeadmConfig,
        CheckRestored,
        ConfirmRestore,
    ]
    assert plan[0].origin == "pre-restore"
    assert plan[0].endpoint == "https://10.0.0.12:2379", "a follower, not the leader"
    stage = plan[1]
    assert [(t.host, t.peer_url) for t in stage.targets] == [
        (f"cp{i}", f"https://10.0.0.1{i}:2380") for i in (1, 2, 3)
    ]
    assert stage.bump_revision == 1_000_000_000 and "--mark-compacted" in stage.describe()
    assert plan[3].apiservers == ("cp1", "cp2", "cp3") and not plan[3].external
    assert plan[2].tag == stage.tag == plan[-1].tag


def test_restore_without_the_bump_is_refused_unless_asked(restoring, monkeypatch) -> None:
    """etcd 3.4's tools (no etcdutl) restore at the snapshot's revision: watchers that saw
    later revisions would keep stale caches. Refused (exit 3) unless asked explicitly."""
    ctx, backup = restoring
    monkeypatch.setattr(etcd_restore, "tools_of", lambda c, h: EtcdTools("3.4.23", None, False))
    with pytest.raises(UnsafeError, match="--without-revision-bump"):
        EtcdRestore(STORE, backup).plan(ctx)
    plan = EtcdRestore(STORE, backup, without_revision_bump=True).plan(ctx)
    stage = next(a for a in plan if isinstance(a, StageRestore))
    assert stage.bump_revision == 0 and "no --bump-revision" in stage.describe()
    assert any("WARNING: cp1, cp2, cp3" in note for note in ctx.notes)


def test_restore_with_etcdutl_bumps_the_revision(restoring, monkeypatch) -> None:
    ctx, backup = restoring
    monkeypatch.setattr(etcd_restore, "tools_of", lambda c, h: EtcdTools("3.5.21", "3.5.21", True))
    stage = next(a for a in EtcdRestore(STORE, backup).plan(ctx) if isinstance(a, StageRestore))
    assert stage.bump_revision == 1_000_000_000
    assert not any("WARNING" in note for note in ctx.notes)


def test_restore_onto_other_hosts_needs_onto(restoring, base: dict) -> None:
    ctx, backup = restoring
    backup.members[0].peer_urls = ["https://10.9.9.9:2380"]
    with pytest.raises(UserError, match="--onto cp1,cp2,cp3"):
        EtcdRestore(STORE, backup).plan(ctx)
    plan = EtcdRestore(STORE, backup, ("cp1", "10.0.0.12", "cp3")).plan(ctx)
    assert [t.host for t in plan[1].targets] == ["cp1", "cp2", "cp3"]
    with pytest.raises(UserError, match="no host of that name"):
        EtcdRestore(STORE, backup, ("cp9",)).plan(ctx)
    with pytest.raises(UserError, match="has no role control-plane"):
        EtcdRestore(STORE, backup, ("w1",)).plan(ctx)
    with pytest.raises(UserError, match="cp2 runs etcd but is not in --onto"):
        EtcdRestore(STORE, backup, ("cp1", "cp3")).plan(ctx)


def test_restore_needs_every_control_plane(restoring) -> None:
    ctx, backup = restoring
    ctx.facts.errors["cp3"] = MachineError("cp3: cannot reach 10.0.0.13:22")
    del ctx.facts.hosts["cp3"]
    with pytest.raises(MachineError, match="cp3 cannot be reached"):
        EtcdRestore(STORE, backup).plan(ctx)


def test_restore_needs_a_control_plane_to_restore_into(restoring) -> None:
    ctx, backup = restoring
    ctx.facts.hosts["cp2"].data["manifests"] = []
    with pytest.raises(UserError, match="run `k8sboot up` first"):
        EtcdRestore(STORE, backup).plan(ctx)


def _backing_up(base: dict, tmp_path: Path, monkeypatch, fails: str):
    """An executor whose snapshot arrives whole in the catalogue, and then fails a check:
    the copy's (`check`), or reading the time of the file on the host (`stat`)."""
    from types import SimpleNamespace

    from k8sboot.etcd import backup, scheduled
    from k8sboot.etcd.client import SnapshotStatus

    cluster = load_data({**base, "name": "lab", "backup": {"directory": str(tmp_path)}}).cluster
    host = FakeConnection(
        "cp1",
        {"install -d ": "", "rm -f ": "", "stat -c ": MachineError("cp1: stat -c %Y failed")},
    )
    ctl = SimpleNamespace(
        connection=host,
        members=lambda: [],
        status=lambda endpoints: [],
        snapshot_save_streaming=lambda endpoint, remote: f"save {remote}",
        count_keys=lambda endpoint: 42,
    )
    for module in (backup, scheduled):
        monkeypatch.setattr(module, "ctl_for", lambda *_: ctl)

    def fetched(executor, ctl, remote, store, file_name, *_):
        with store.writer(file_name) as out:
            out.write(b"every Secret of the cluster")
        if fails == "check":
            raise VerifyFailed(f"cp1: the downloaded snapshot differs from {remote}")
        return {"status": SnapshotStatus(1, 2, 3, 4), "size": 27, "sha256": "ab" * 32,
                "stored": 27, "file_sha256": "ab" * 32, "fetched": 1.0}  # fmt: skip

    for module in (backup, scheduled):
        monkeypatch.setattr(module, "check_and_fetch", fetched)
    ctx = SimpleNamespace(cluster=cluster, nodes=set(), notes=[])
    executing = SimpleNamespace(take_snapshot=backup.take_snapshot, pull=scheduled.pull)
    return executing, SimpleNamespace(ctx=ctx, progress=lambda *_: None)


@pytest.mark.parametrize("fails", ["check", "stat"])
def test_a_snapshot_failing_a_check_leaves_no_file_behind(
    base: dict, tmp_path: Path, monkeypatch, fails: str
) -> None:
    from k8sboot.etcd.scheduled import PullSnapshots

    executing, executor = _backing_up(base, tmp_path, monkeypatch, fails)
    if fails == "check":  # `etcd backup`: the copy disagrees with the host's file
        with pytest.raises(VerifyFailed, match="differs"):
            executing.take_snapshot(executor, SaveSnapshot("cp1", "https://x:2379", "cp1", "-"))
    else:  # `etcd pull`: the snapshot is gone from the host before its time was read
        with pytest.raises(MachineError, match="stat"):
            executing.pull(executor, PullSnapshots("cp1", ("/var/lib/snap/lab-1.db",)))
    assert list(tmp_path.iterdir()) == []


def test_the_pre_restore_snapshot_is_of_the_data_the_api_servers_use(
    restoring, monkeypatch
) -> None:
    """Issue 16: onto new hosts, the snapshot taken first came from the new, empty members;
    it must come from the etcd the API servers still use, or be skipped with a note."""
    ctx, backup = restoring
    old = "https://10.9.9.1:2379"
    status = EndpointStatus(old, 7, 8, "3.5.16", 4096, 4096, 900, 9, 2, ())
    monkeypatch.setattr(etcd_restore, "etcd_in_use", lambda ctx, host: ([old], [status]))
    backup.members[0].peer_urls = ["https://10.9.9.9:2380"]
    plan = EtcdRestore(STORE, backup, ("cp1", "cp2", "cp3")).plan(ctx)
    first = plan[0]
    assert isinstance(first, SaveSnapshot) and first.origin == "pre-restore"
    assert (first.host, first.endpoint, first.member) == ("cp1", old, "7")
    monkeypatch.setattr(etcd_restore, "etcd_in_use", lambda ctx, host: ([old], []))
    plan = EtcdRestore(STORE, backup, ("cp1", "cp2", "cp3")).plan(ctx)
    assert not any(isinstance(a, SaveSnapshot) for a in plan)
    assert any(f"no pre-restore snapshot: the etcd the API servers use ({old})" in n
               for n in ctx.notes)  # fmt: skip


def test_the_api_servers_etcd_is_read_from_their_manifest() -> None:
    manifest = (
        b"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n"
        b"    command:\n    - kube-apiserver\n"
        b"    - --etcd-servers=https://10.0.0.31:2379,https://10.0.0.32:2379\n"
    )
    assert etcd_restore.etcd_servers(manifest) == [
        "https://10.0.0.31:2379",
        "https://10.0.0.32:2379",
    ]
    assert etcd_restore.etcd_servers(b"not: [a pod") == []
    assert etcd_restore.etcd_servers(None) == []


def _recorded(ctx, backup, tag: str = "0badcafe") -> RestoreRecord:
    record = RestoreRecord(
        tag, backup.name, str(STORE.location), ["cp1", "cp2", "cp3"], ["cp1", "cp2", "cp3"],
        False, "", "swapped",
    )  # fmt: skip
    restore_record.write(ctx.state, record)
    return record


def test_a_restore_in_progress_is_resumed_from_its_record(restoring) -> None:
    """Issue 16: once the API servers were stopped every control plane looked uninitialised
    and a second `etcd restore` was refused ("run `k8sboot up` first"). With the record it
    carries on from the stop, with the same tag, staging nothing again."""
    ctx, backup = restoring
    _recorded(ctx, backup)
    for host in ("cp1", "cp2", "cp3"):  # what a stopped control plane looks like
        ctx.facts.hosts[host].data["manifests"] = []
    plan = EtcdRestore(STORE, backup).plan(ctx)
    assert [type(a) for a in plan] == [
        StopControlPlane,
        SwapDataDirs,
        StartRestoredEtcd,
        StartApiServers,
        UpdateKubeadmConfig,
        CheckRestored,
        ConfirmRestore,
    ]
    assert {a.tag for a in plan if hasattr(a, "tag")} == {"0badcafe"}
    assert any("resuming the restore of lab-1 (tag 0badcafe, swapped)" in n for n in ctx.notes)
    other = manifest("lab-2", etcd_restore_time())
    with pytest.raises(UnsafeError, match="another restore is in progress: the restore of lab-1"):
        EtcdRestore(STORE, other).plan(ctx)


def test_a_restore_in_progress_is_rolled_back_by_its_tag(restoring) -> None:
    ctx, backup = restoring
    with pytest.raises(UserError, match="no restore is in progress"):
        EtcdRollback("0badcafe").plan(ctx)
    _recorded(ctx, backup)
    with pytest.raises(UserError, match=r"--rollback 12345678: the restore of lab-1 .*0badcafe"):
        EtcdRollback("12345678").plan(ctx)
    plan = EtcdRollback("0badcafe").plan(ctx)
    assert [type(a) for a in plan] == [
        StopControlPlane,
        RollBackData,
        StartRestoredEtcd,
        StartApiServers,
        ConfirmRestore,
    ]
    assert plan[3].original and plan[4].rolled_back


def test_up_reset_and_node_remove_refuse_while_a_restore_is_recorded(restoring) -> None:
    from k8sboot import workflows
    from k8sboot.nodes.drain import DrainOptions

    ctx, backup = restoring
    guarded = [workflows.up(), workflows.up("w1"), workflows.reset(False),
               workflows.node_remove("w1", DrainOptions())]  # fmt: skip
    for workflow in guarded:
        for guard in workflow.guards:
            guard(ctx.state)  # nothing recorded: no refusal
    _recorded(ctx, backup)
    for workflow in guarded:
        with pytest.raises(UnsafeError) as refused:
            for guard in workflow.guards:
                guard(ctx.state)
        said = str(refused.value)
        assert "`k8sboot etcd restore lab-1 --yes` finishes it" in said, workflow.name
        assert "`k8sboot etcd restore --rollback 0badcafe --yes` undoes it" in said
        assert "/var/lib/k8sboot/etcd-before-restore/0badcafe" in said
