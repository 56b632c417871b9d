"""`up` and `plan` refuse to change the Kubernetes version of a running cluster; that is
`k8sboot upgrade`'s work (issue 18)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest

from k8sboot.cluster.upgrade import KeepVersion
from k8sboot.errors import UnsafeError, UserError
from k8sboot.transport import ReadOnlyHosts
from k8sboot.workflows import up

from .conftest import load_data
from .factsdata import context, converged_host, fresh
from .fakes import scripted


def _at(base: dict, version: str):
    spec = copy.deepcopy(base)
    spec["kubernetes"] = {"version": version}
    return load_data(spec).cluster


def _running(base: dict, tmp_path: Path, version: str):
    cluster = _at(base, version)
    return context(
        cluster, {h.name: converged_host(cluster, h.name) for h in cluster.hosts}, tmp_path
    )


@pytest.mark.parametrize("wanted", ["1.33.2", "1.32.4", "1.30.13"])
def test_a_running_cluster_at_another_version_is_refused(
    base: dict, tmp_path: Path, wanted: str
) -> None:
    ctx = _running(base, tmp_path, "1.33.1")
    ctx.cluster = _at(base, wanted)
    with pytest.raises(UnsafeError) as refused:
        KeepVersion().plan(ctx)
    assert str(refused.value) == (
        f"the cluster file says Kubernetes {wanted}, but cp1, w1 run 1.33.1: `up` never "
        "changes the version of a running cluster; run `k8sboot upgrade`"
    )


def test_it_is_the_first_step_of_up_so_nothing_changes_before(base: dict, tmp_path: Path) -> None:
    assert isinstance(up().steps[0], KeepVersion)
    assert isinstance(up(only="w1").steps[0], KeepVersion)


def test_a_node_half_way_through_an_upgrade_is_named(base: dict, tmp_path: Path) -> None:
    ctx = _running(base, tmp_path, "1.33.1")
    ctx.cluster = _at(base, "1.33.2")
    for name in ("kubeadm", "kubelet"):
        ctx.facts.hosts["cp1"].data["packages"][name]["version"] = "1.33.2-1.1"
    ctx.facts.hosts["w1"].data["packages"]["kubeadm"]["version"] = "1.33.2-1.1"  # kubelet not yet
    with pytest.raises(UnsafeError, match=r"but w1 runs 1\.33\.1: "):
        KeepVersion().plan(ctx)


def test_new_clusters_and_new_hosts_come_up_at_the_files_version(
    base: dict, tmp_path: Path
) -> None:
    cluster = _at(base, "1.33.1")
    fresh_hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    assert KeepVersion().plan(context(cluster, fresh_hosts, tmp_path)) == []
    ctx = _running(base, tmp_path, "1.33.1")
    base = copy.deepcopy(base)
    base["hosts"].append({"name": "w2", "address": "10.0.0.22", "roles": ["worker"]})
    ctx.cluster = _at(base, "1.33.1")
    ctx.facts.hosts["w2"] = fresh(
        "w2", "10.0.0.22", packages={"kubelet": {"version": "1.30.1-1.1", "held": False}}
    )
    assert KeepVersion().plan(ctx) == []  # not configured by kubeadm: node setup installs 1.33.1


# -- `k8sboot upgrade` planning: each node's work read from what it runs ------------------

TARGET = "1.33.1"
OLD = "1.32.4"
PACKAGES_INDEX = "".join(
    f"Package: {p}\nVersion: {v}-1.1\n\n"
    for p in ("kubeadm", "kubelet", "kubectl")
    for v in (OLD, TARGET)
)


# kubeadm's ClusterConfiguration as `upgrade apply` uploads it (v1beta4 since 1.31).
def _kubeadm_config(version: str) -> dict:
    text = (
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
        f"kubernetesVersion: v{version}\n"
    )
    return {"data": {"ClusterConfiguration": text}}


def _ha(
    base: dict, tmp_path: Path, version: str = OLD, stored: str = OLD, index: str = PACKAGES_INDEX
):
    """Three control planes and a worker running `version`; the cluster file says TARGET."""
    from k8sboot.facts import NodeStatus

    from .hacluster import ha_cluster

    running = ha_cluster(copy.deepcopy(base) | {"kubernetes": {"version": version}})
    hosts = {h.name: converged_host(running, h.name) for h in running.hosts}
    for h in running.control_planes:
        images = hosts[h.name].data["images"]
        for pod in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            images[f"{pod}.yaml"] = f"registry.k8s.io/{pod}:v{version}"
    nodes = {
        h.name: NodeStatus(h.name, True, "KubeletReady", f"v{version}", h.ip, False)
        for h in running.hosts
    }
    ctx = context(running, hosts, tmp_path, nodes)
    ctx.cluster = ha_cluster(copy.deepcopy(base) | {"kubernetes": {"version": TARGET}})
    answers = {
        "get configmap kubeadm-config": _kubeadm_config(stored),
        "/Packages": index,
        "endpoint health": [
            {"endpoint": f"https://10.0.0.1{i}:2379", "health": True} for i in (1, 2, 3)
        ],
        "get poddisruptionbudgets": {"items": []},
        "get pods": {"items": []},
    }
    from k8sboot.transport import ReadOnlyHosts

    from .fakes import scripted

    ctx.view = ReadOnlyHosts(scripted([h.name for h in ctx.cluster.hosts], answers))
    return ctx


def _applied(ctx, name: str) -> None:
    """`name` got the target's kubeadm and its control plane runs the target."""
    found = ctx.facts.hosts[name].data
    for pod in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        found["images"][f"{pod}.yaml"] = f"registry.k8s.io/{pod}:v{TARGET}"
    found["packages"]["kubeadm"]["version"] = f"{TARGET}-1.1"


def _upgrade_plan(ctx) -> dict[str, list[str]]:
    from k8sboot.nodes.drain import DrainOptions
    from k8sboot.workflows import upgrade

    return {
        step.title: [a.describe() for a in step.plan(ctx)]
        for step in upgrade(DrainOptions()).steps
        if step.title.startswith(("upgrade", "remove"))
    }


def test_each_node_in_the_kubeadm_order_the_first_control_plane_with_apply(
    base: dict, tmp_path: Path
) -> None:
    from k8sboot.cluster.upgrade import UpgradeKubeadm
    from k8sboot.nodes.drain import DrainOptions
    from k8sboot.workflows import upgrade

    planned = _upgrade_plan(_ha(base, tmp_path))
    # The kubeadm package first, on every node at once (a command: nothing that runs
    # changes), then each node in turn.
    assert planned["upgrade kubeadm on every node"] == [
        f"install kubeadm 1.33.1 on {n} (the repository of its minor)"
        for n in ("cp1", "cp2", "cp3", "w1")
    ]
    node_work = ", drain, kubelet and kubectl 1.33.1, restart the kubelet, uncordon"
    assert planned["upgrade control planes"] == [
        f"upgrade cp1: kubeadm upgrade apply v1.33.1{node_work}",
        f"upgrade cp2: kubeadm upgrade node{node_work}",
        f"upgrade cp3: kubeadm upgrade node{node_work}",
    ]
    assert planned["upgrade workers"] == [f"upgrade w1: kubeadm upgrade node{node_work}"]
    titles = [step.title for step in upgrade(DrainOptions()).steps]
    assert (
        titles.index("etcd backup before the upgrade")
        < titles.index("upgrade kubeadm on every node")
        < titles.index("upgrade control planes")
    )
    assert UpgradeKubeadm().at_once(4) == 4
    assert planned["remove kubeadm's etcd copies"] == []  # not before every node is done


def test_the_control_plane_holding_the_virtual_ip_goes_last(base: dict, tmp_path: Path) -> None:
    """The address then moves once, onto an upgraded control plane."""
    ctx = _ha(base, tmp_path)
    vip = {"interface": "eth1", "address": "10.0.0.10", "prefix": 32, "mac": ""}
    ctx.facts.hosts["cp1"].data["addresses"].append(vip)
    planned = _upgrade_plan(ctx)["upgrade control planes"]
    assert [p.split(":")[0] for p in planned] == ["upgrade cp2", "upgrade cp3", "upgrade cp1"]
    assert "kubeadm upgrade apply" in planned[0]


def test_an_upgraded_cluster_plans_nothing_and_checks_nothing(base: dict, tmp_path: Path) -> None:
    ctx = _ha(base, tmp_path, version=TARGET, stored=TARGET)
    ctx.view = ReadOnlyHosts(scripted([h.name for h in ctx.cluster.hosts]))  # asks nothing
    assert all(actions == [] for actions in _upgrade_plan(ctx).values())


def test_a_run_stopped_after_the_first_control_plane_goes_on_with_the_next(
    base: dict, tmp_path: Path
) -> None:
    ctx = _ha(base, tmp_path, stored=TARGET)
    _applied(ctx, "cp1")
    planned = _upgrade_plan(ctx)["upgrade control planes"]
    assert (
        planned[0]
        == "upgrade cp1: drain, kubelet and kubectl 1.33.1, restart the kubelet, uncordon"
    )
    assert planned[1].startswith("upgrade cp2: kubeadm upgrade node,")
    assert _upgrade_plan(ctx)["upgrade kubeadm on every node"] == [
        f"install kubeadm 1.33.1 on {n} (the repository of its minor)" for n in ("cp2", "cp3", "w1")
    ]


def test_apply_runs_again_until_kubeadm_config_names_the_target(base: dict, tmp_path: Path) -> None:
    """kubeadm uploads kubeadm-config after moving every component (upgrade apply's
    upload-config phase): killed before it, `upgrade node` elsewhere would keep the old."""
    ctx = _ha(base, tmp_path, stored=OLD)
    _applied(ctx, "cp1")
    planned = _upgrade_plan(ctx)["upgrade control planes"]
    assert planned[0].startswith("upgrade cp1: kubeadm upgrade apply v1.33.1, drain")


def test_a_node_the_upgrade_cordoned_is_uncordoned(base: dict, tmp_path: Path) -> None:
    from k8sboot.cluster.upgrade import UpgradeRecord

    ctx = _ha(base, tmp_path, version=TARGET, stored=TARGET)
    UpgradeRecord(TARGET, "lab-1", ["w1"]).write(ctx.state)
    assert _upgrade_plan(ctx)["upgrade workers"] == ["upgrade w1: uncordon"]


@pytest.mark.parametrize(
    ("running", "wanted", "refused"),
    [
        (
            "1.33.1",
            "1.32.4",
            "the cluster runs 1.33.1 and the cluster file says 1.32.4: k8sboot does not downgrade",
        ),
        (
            "1.33.2",
            "1.33.1",
            "the cluster runs 1.33.2 and the cluster file says 1.33.1: k8sboot does not downgrade",
        ),
        ("1.31.5", "1.33.1", "1.31.5 to 1.33.1 skips 1.32: kubeadm upgrades one minor at a time"),
    ],
)
def test_downgrades_and_skipped_minors_are_refused_before_anything_changes(
    base: dict, tmp_path: Path, running: str, wanted: str, refused: str
) -> None:
    from k8sboot.cluster.upgrade import UpgradeChecks
    from k8sboot.nodes.drain import DrainOptions

    from .hacluster import ha_cluster

    ctx = _ha(base, tmp_path, version=running, stored=running)
    ctx.cluster = ha_cluster(copy.deepcopy(base) | {"kubernetes": {"version": wanted}})
    with pytest.raises(UnsafeError, match=refused):
        UpgradeChecks(DrainOptions()).plan(ctx)


def test_the_repository_must_serve_the_target(base: dict, tmp_path: Path) -> None:
    from k8sboot.cluster.upgrade import UpgradeChecks
    from k8sboot.errors import UserError
    from k8sboot.nodes.drain import DrainOptions

    ctx = _ha(base, tmp_path, index=PACKAGES_INDEX.replace(f"Version: {TARGET}-1.1\n", ""))
    with pytest.raises(UserError, match=r"has no kubeadm, kubelet, kubectl 1\.33\.1"):
        UpgradeChecks(DrainOptions()).plan(ctx)


def test_kubeadms_upgrade_plan_is_said_in_a_line() -> None:
    """The UpgradePlan kubeadm prints with -o json (cmd/kubeadm/app/apis/output/v1alpha3/
    types.go): cluster-wide rows without nodeName, etcd per node."""
    from k8sboot.cluster.upgrade import _verdict

    plan = {
        "kind": "UpgradePlan",
        "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
        "availableUpgrades": [
            {
                "description": "version in the v1.32 series",
                "components": [
                    {
                        "name": "kubelet",
                        "currentVersion": "v1.32.4",
                        "newVersion": "v1.33.1",
                        "nodeName": "w1",
                    },
                    {
                        "name": "kube-apiserver",
                        "currentVersion": "v1.32.4",
                        "newVersion": "v1.33.1",
                        "nodeName": "cp1",
                    },
                    {"name": "kube-proxy", "currentVersion": "1.32.4", "newVersion": "v1.33.1"},
                    {"name": "CoreDNS", "currentVersion": "v1.11.3", "newVersion": "v1.12.0"},
                    {
                        "name": "etcd",
                        "currentVersion": "3.5.16-0",
                        "newVersion": "3.5.21-0",
                        "nodeName": "cp1",
                    },
                ],
            }
        ],
        "configVersions": [{"group": "kubelet.config.k8s.io", "manualUpgradeRequired": False}],
    }
    assert _verdict(json.dumps(plan)) == (
        "kube-proxy 1.32.4 -> v1.33.1; CoreDNS v1.11.3 -> v1.12.0; etcd 3.5.16-0 -> 3.5.21-0"
    )
    assert _verdict("") == "nothing to upgrade"  # kubeadm prints nothing when up to date


def test_a_manifest_kubeadm_left_aside_goes_back_before_a_run_again(tmp_path: Path) -> None:
    """`upgrade apply` moves each component with two renames (old manifest into
    kubeadm-backup-manifests-<date>, new one from kubeadm-upgraded-manifests<n>;
    cmd/kubeadm/app/phases/upgrade/staticpods.go): killed between them, the manifest is
    missing and kubeadm's preflight refuses every later run. The newest copy goes back."""
    from k8sboot.cluster.upgrade import _put_back_manifests

    from .fakes import LocalShell

    manifests = tmp_path / "etc/kubernetes/manifests"
    kept = tmp_path / "etc/kubernetes/tmp"
    manifests.mkdir(parents=True)
    (kept / "kubeadm-upgraded-manifests123").mkdir(parents=True)
    (kept / "kubeadm-backup-manifests-2026-12-07-10-00-00").mkdir(parents=True)
    for pod in ("kube-controller-manager", "kube-scheduler"):
        (manifests / f"{pod}.yaml").write_text(f"{pod} as it runs\n")
    (kept / "kubeadm-backup-manifests-2026-12-07-10-00-00/kube-apiserver.yaml").write_text("old\n")
    time.sleep(0.01)
    (kept / "kubeadm-upgraded-manifests123/kube-apiserver.yaml").write_text("new\n")
    _put_back_manifests(LocalShell("cp1", tmp_path))  # type: ignore[arg-type]
    assert (manifests / "kube-apiserver.yaml").read_text() == "new\n"
    assert (manifests / "kube-scheduler.yaml").read_text() == "kube-scheduler as it runs\n"


def _external(base: dict, tmp_path: Path, running: dict[str, str], wanted: str):
    from .factsdata import EXTERNAL_HOSTS, converged_external

    spec = copy.deepcopy(base)
    spec["hosts"] = copy.deepcopy(EXTERNAL_HOSTS)
    spec["etcd"] = {"topology": "external", "version": wanted}
    cluster = load_data(spec).cluster
    ctx = converged_external(cluster, tmp_path)
    answers = {
        f"--endpoints=https://{h.ip}:2379 ": [
            {
                "Endpoint": f"https://{h.ip}:2379",
                "Status": {"header": {"member_id": i}, "leader": 1, "version": running[h.name]},
            }
        ]
        for i, h in enumerate(cluster.with_role("etcd"), 1)
    }
    ctx.view = ReadOnlyHosts(scripted([h.name for h in cluster.hosts], answers))
    return ctx


def test_external_etcd_moves_one_member_at_a_time_to_the_release_called_for(
    base: dict, tmp_path: Path
) -> None:
    from k8sboot.cluster.upgrade import UpgradeEtcdMember, UpgradeExternalEtcd

    running = {"e1": "3.5.16", "e2": "3.5.21", "e3": "3.5.16"}  # e2 done before a stop
    planned = UpgradeExternalEtcd().plan(_external(base, tmp_path, running, "3.5.21"))
    assert planned == [
        UpgradeEtcdMember("e1", "3.5.16", "3.5.21"),
        UpgradeEtcdMember("e3", "3.5.16", "3.5.21"),
    ]
    assert not UpgradeExternalEtcd.hosts_apart  # one after another: quorum holds
    with pytest.raises(UnsafeError, match=r"e2 runs 3\.5\.24, newer than 3\.5\.21: etcd is never"):
        UpgradeExternalEtcd().plan(_external(base, tmp_path, running | {"e2": "3.5.24"}, "3.5.21"))


def test_a_member_is_installed_restarted_and_the_cluster_healthy_before_the_next(
    base: dict, tmp_path: Path
) -> None:
    from k8sboot.cluster.upgrade import UpgradeEtcdMember
    from k8sboot.executor import Executor

    from .fakes import FakeConnection, FakeTransport

    ctx = _external(base, tmp_path, {"e1": "3.5.16", "e2": "3.5.16", "e3": "3.5.16"}, "3.5.21")
    healthy = [{"endpoint": f"https://10.0.0.3{i}:2379", "health": True} for i in (1, 2, 3)]
    answers = {
        "python3 -": '{"downloaded": true, "linked": ["etcd"]}',
        "systemctl restart etcd": "",
        "endpoint health": healthy,
    }
    transport = FakeTransport({n: FakeConnection(n, dict(answers)) for n in ctx.facts.hosts})
    Executor(ctx, transport).execute(UpgradeEtcdMember("e1", "3.5.16", "3.5.21"))  # type: ignore[arg-type]
    ran = transport["e1"].ran
    assert ran[0] == "python3 -" and ran[1] == "systemctl restart etcd"
    assert any("endpoint health" in c for n in ctx.facts.hosts for c in transport[n].ran)
    assert not transport["e2"].ran or all("endpoint health" in c for c in transport["e2"].ran)


def test_walking_goes_through_the_newest_release_of_each_minor_between(
    base: dict, tmp_path: Path
) -> None:
    from k8sboot.cluster.upgrade import walk

    from .hacluster import ha_cluster

    ctx = _ha(base, tmp_path, version="1.30.13", stored="1.30.13")
    ctx.cluster = ha_cluster(copy.deepcopy(base) | {"kubernetes": {"version": "1.32.3"}})

    def index(*versions: str) -> str:
        return "".join(
            f"Package: {p}\nVersion: {v}-1.1\n\n"
            for p in ("kubeadm", "kubelet", "kubectl")
            for v in versions
        )

    answers = {"/v1.31/deb/Packages": index("1.31.4", "1.31.5", "1.31.10")}
    ctx.view = ReadOnlyHosts(scripted([h.name for h in ctx.cluster.hosts], answers))
    assert walk(ctx) == ["1.31.10", "1.32.3"]  # 1.31.10 is newer than 1.31.5
    answers["/v1.31/deb/Packages"] = index("1.30.13")
    ctx.view = ReadOnlyHosts(scripted([h.name for h in ctx.cluster.hosts], answers))
    with pytest.raises(UserError, match=r"serves no 1\.31 release"):
        walk(ctx)


def test_a_node_cordoned_before_the_upgrade_stays_cordoned(base: dict, tmp_path: Path) -> None:
    import dataclasses

    ctx = _ha(base, tmp_path)
    ctx.nodes["w1"] = dataclasses.replace(ctx.nodes["w1"], unschedulable=True)
    assert _upgrade_plan(ctx)["upgrade workers"] == [
        "upgrade w1: kubeadm upgrade node, drain, kubelet and kubectl 1.33.1, restart the kubelet"
    ]


def test_a_node_reads_the_repository_index_once(base: dict, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from k8sboot.cluster.upgrade import _install

    from .fakes import FakeConnection

    ctx = _ha(base, tmp_path)
    node = FakeConnection("w1", {"apt-get": "", "apt-mark": ""})
    executor = SimpleNamespace(ctx=ctx, progress=lambda *_: None)
    _install(executor, node, ("kubeadm",), TARGET)  # type: ignore[arg-type]
    _install(executor, node, ("kubelet", "kubectl"), TARGET)  # type: ignore[arg-type]
    installs = [c for c in node.ran if "apt-get install" in c]
    assert [c.count("apt-get update") for c in installs] == [1, 0]
    assert b"/v1.33/deb/" in node.files["/etc/apt/sources.list.d/kubernetes.sources"]
    # A node that rebooted under an install left dpkg interrupted: apt refuses until the
    # unpacked packages are configured, so every install configures them first.
    assert all(c.startswith("dpkg --configure -a") for c in installs)


def test_packages_the_upgrade_installed_are_recorded_without_a_role_run(
    base: dict, tmp_path: Path
) -> None:
    """The package role's Ansible run on every host took 20 s of an upgrade to redo what
    the upgrade had done node by node. Recorded instead where the role converged at the
    version before and the upgrade left what the role would; anything else runs it."""
    from k8sboot.cluster.node_setup import Converge, RecordConverged, fingerprint, package_vars
    from k8sboot.cluster.upgrade import (
        KEYRING_FILE,
        SOURCES_FILE,
        PackagesAfterUpgrade,
        UpgradeRecord,
        at_version,
        render_sources,
    )
    from k8sboot.step import sha256

    ctx = _ha(base, tmp_path, version=TARGET, stored=TARGET)
    before = fingerprint("kube_packages", package_vars(at_version(ctx.cluster, OLD)))
    now = package_vars(ctx.cluster)
    sources = render_sources(now["kube_packages_url"], bool(now["kube_packages_key_url"]))
    for name, found in ctx.facts.hosts.items():
        found.data["stamps"]["kube_packages"] = before
        found.data["files"][KEYRING_FILE] = "the key the role fetched"
        if name != "w1":  # w1's repository file is not the role's
            found.data["files"][SOURCES_FILE] = sha256(sources)
    ctx.facts.hosts["cp3"].data["packages"]["kubectl"]["held"] = False
    step = PackagesAfterUpgrade()

    (everyone,) = step.plan(ctx)  # no record of the upgrade: the role runs everywhere
    assert isinstance(everyone, Converge) and len(everyone.hosts) == 4

    UpgradeRecord(TARGET, "lab-backup", running=OLD).write(ctx.state)
    recorded, left = step.plan(ctx)
    assert isinstance(recorded, RecordConverged) and recorded.hosts == ("cp1", "cp2")
    assert dict(recorded.stamps)["cp1"] == json.dumps(
        {r: fingerprint(r, v) for r, v in role_vars_of(ctx, "cp1").items()}, sort_keys=True
    )
    assert isinstance(left, Converge) and left.hosts == ("cp3", "w1")
    UpgradeRecord(TARGET, "lab-backup", running="1.32.0").write(ctx.state)  # not what ran
    (everyone,) = step.plan(ctx)
    assert isinstance(everyone, Converge) and len(everyone.hosts) == 4
    # Recorded with one command per host, the stamps read back into the facts: no probe;
    # the hosts recorded plan nothing more.
    from k8sboot.executor import Executor

    from .fakes import FakeTransport, LocalShell

    roots = {n: tmp_path / "hosts" / n for n in ("cp1", "cp2")}
    transport = FakeTransport({n: LocalShell(n, root) for n, root in roots.items()})
    outcome = Executor(ctx, transport).execute(recorded)  # type: ignore[arg-type]
    assert outcome.reprobe == ()
    for name, root in roots.items():
        written = (root / "var/lib/k8sboot/stamps/kube_packages").read_text().strip()
        assert ctx.facts.hosts[name].data["stamps"]["kube_packages"] == written
        assert ctx.host_facts(ctx.cluster.host(name)).stamp("kube_packages") == (
            json.loads(dict(recorded.stamps)[name])["kube_packages"]
        )

    UpgradeRecord(TARGET, "lab-backup", running=OLD).write(ctx.state)
    (left,) = step.plan(ctx)
    assert left.hosts == ("cp3", "w1")


def role_vars_of(ctx, name: str) -> dict:
    from k8sboot.cluster.node_setup import role_vars

    host = ctx.cluster.host(name)
    return role_vars(ctx.cluster, host, ctx.host_facts(host))


def test_a_budget_that_would_block_a_drain_stops_the_upgrade_before_anything_changes(
    base: dict, tmp_path: Path
) -> None:
    """The drain pre-check reads every node's pods in one question (the same pods the
    per-node `--field-selector spec.nodeName=` gives) and names the node a drain would
    stop on."""
    from k8sboot.cluster.upgrade import UpgradeChecks
    from k8sboot.nodes.drain import DrainOptions

    from .podsdata import WEB, pdb, web

    ctx = _ha(base, tmp_path)
    transport = ctx.view._transport  # type: ignore[attr-defined]
    for connection in transport.values():
        connection.answers["get poddisruptionbudgets"] = {"items": [pdb("web", WEB, 0)]}
        connection.answers["get pods"] = {"items": [web("a", node="cp2"), web("b", node="w1")]}
    with pytest.raises(UnsafeError, match=r"PodDisruptionBudget default/web") as refused:
        UpgradeChecks(DrainOptions()).plan(ctx)
    assert "cp2" in str(refused.value)
    asked = [c for connection in transport.values() for c in connection.ran if "get pods" in c]
    assert len(asked) == 1 and "--field-selector" not in asked[0], asked
