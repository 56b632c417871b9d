from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import pytest

from k8sboot.actions import Fetched, WriteFiles
from k8sboot.cluster.cni import ApplyManifest, WaitNodesReady, cni_stamp
from k8sboot.cluster.kube_vip import WaitApiServer
from k8sboot.cluster.kubeadm import KubeadmInit, KubeadmJoin
from k8sboot.cluster.kubeconfig import FetchKubeconfig
from k8sboot.cluster.node_setup import Converge, drift
from k8sboot.errors import MachineError
from k8sboot.etcd.install import InstallEtcd
from k8sboot.kubeadm_node import ADMIN_CONF, KUBELET_CONF
from k8sboot.render import cni_file, kube_vip_file
from k8sboot.step import sha256
from k8sboot.transport import ReadOnlyHosts
from k8sboot.workflows import reset, up

from .conftest import load_data
from .factsdata import context, converged_host, fresh, ready
from .fakes import FakeTransport, LocalShell
from .hacluster import ha_cluster


@pytest.fixture
def cluster(base: dict):
    base["hosts"].append({"name": "w2", "address": "10.0.0.22", "roles": ["worker"]})
    return load_data(base).cluster


def _plan(ctx) -> dict[str, list]:
    return {step.title: step.plan(ctx) for step in up().steps}


def _converged(cluster, tmp_path: Path):
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    cp = hosts["cp1"]
    cp.data["stamps"]["cni"] = sha256(cni_file(cluster).content)
    ctx = context(cluster, hosts, tmp_path, ready(*[h.name for h in cluster.hosts]))
    ctx.state.kubeconfig.write_text("kubeconfig")
    ctx.state.kubeconfig.with_name("kubeconfig.source").write_text("admin-hash\n")
    return ctx


def test_fresh_cluster_plans_everything(cluster, tmp_path: Path) -> None:
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    plan = _plan(context(cluster, hosts, tmp_path))
    (converge,) = plan["node setup (Ansible)"]
    assert isinstance(converge, Converge)
    assert dict(converge.roles) == {
        name: ("prepare", "containerd", "kube_packages") for name in ("cp1", "w1", "w2")
    }
    assert all(why == "not set up yet" for _, _, why in converge.reasons)
    assert "w1: prepare (not set up yet), containerd (not set up yet)" in converge.describe()
    assert [a.host for a in plan["containerd configuration"]] == ["cp1", "w1", "w2"]
    assert all(a.restart == "containerd" for a in plan["containerd configuration"])
    assert plan["kubeadm init"] == [KubeadmInit("cp1")]
    assert plan["etcd tools (control planes)"] == [InstallEtcd("cp1", None)]
    assert plan["join control planes"] == []
    assert plan["join workers"] == [KubeadmJoin(("w1", "w2"), control_plane=False)]
    assert [type(a) for a in plan["CNI"]] == [ApplyManifest]
    assert isinstance(plan["nodes Ready"][0], WaitNodesReady)
    assert isinstance(plan["kubeconfig"][0], FetchKubeconfig)
    assert plan["kube-vip"] == []


def test_converged_cluster_plans_nothing(cluster, tmp_path: Path) -> None:
    plan = _plan(_converged(cluster, tmp_path))
    assert {title: actions for title, actions in plan.items() if actions} == {}


def test_a_new_worker_touches_only_that_worker(base: dict, cluster, tmp_path: Path) -> None:
    ctx = _converged(cluster, tmp_path)
    base["hosts"].append({"name": "w3", "address": "10.0.0.23", "roles": ["worker"]})
    bigger = load_data(base).cluster
    ctx.cluster = bigger
    ctx.facts.hosts["w3"] = fresh("w3", "10.0.0.23")
    plan = _plan(ctx)
    (converge,) = plan["node setup (Ansible)"]
    assert dict(converge.roles) == {"w3": ("prepare", "containerd", "kube_packages")}
    assert [a.host for a in plan["containerd configuration"]] == ["w3"]
    assert plan["kubeadm init"] == []
    assert plan["join workers"] == [KubeadmJoin(("w3",), control_plane=False)]
    assert plan["CNI"] == [] and plan["kubeconfig"] == []
    assert plan["nodes Ready"][0].nodes == ("cp1", "w1", "w2", "w3")


def test_a_new_control_plane_runs_ansible_only_there(base: dict, tmp_path: Path) -> None:
    cluster = ha_cluster(base, control_planes=2)
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    ctx = context(cluster, hosts, tmp_path)
    ctx.cluster = ha_cluster(base, control_planes=3)
    ctx.facts.hosts["cp3"] = fresh("cp3", "10.0.0.13")
    (converge,) = _plan(ctx)["node setup (Ansible)"]
    assert converge.hosts == ("cp3",)


def test_node_add_sets_up_only_the_new_node(base: dict, cluster, tmp_path: Path) -> None:
    """`node add w3` joins w3; drift elsewhere waits for `up`, which would name it."""
    ctx = _converged(cluster, tmp_path)
    ctx.facts.hosts["w1"].data["services"]["containerd"]["active"] = "failed"
    ctx.facts.hosts["w2"].data["files"]["/etc/containerd/config.toml"] = "edited"
    ctx.facts.hosts["w2"].data["packages"]["kubelet"]["held"] = False
    base["hosts"].append({"name": "w3", "address": "10.0.0.23", "roles": ["worker"]})
    ctx.cluster = load_data(base).cluster
    ctx.facts.hosts["w3"] = fresh("w3", "10.0.0.23")
    plan = {step.title: step.plan(ctx) for step in up(only="w3").steps}
    (converge,) = plan["node setup (Ansible)"]
    assert converge.hosts == ("w3",)
    assert plan["services"] == []
    assert [a.host for a in plan["containerd configuration"]] == ["w3"]
    assert plan["join workers"] == [KubeadmJoin(("w3",), control_plane=False)]
    assert {a.hosts for a in _plan(ctx)["services"]} == {("w1",)}


def test_half_done_join_is_reset_first(cluster, tmp_path: Path) -> None:
    ctx = _converged(cluster, tmp_path)
    del ctx.nodes["w2"]  # kubelet.conf exists, but the Node never registered
    assert _plan(ctx)["join workers"] == [
        KubeadmJoin(("w2",), control_plane=False, reset_first=("w2",))
    ]


def test_half_done_init_is_reset_first(cluster, tmp_path: Path) -> None:
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    hosts["cp1"].data["manifests"] = ["kube-apiserver.yaml", "etcd.yaml"]  # no admin.conf
    assert _plan(context(cluster, hosts, tmp_path))["kubeadm init"] == [
        KubeadmInit("cp1", reset_first=True)
    ]


def test_half_done_init_gets_kube_vip_back_after_its_reset(base: dict, tmp_path: Path) -> None:
    """kubeadm reset empties /etc/kubernetes/manifests: kube-vip's manifest, found in place
    before the reset, must be written again after it, or init waits for a virtual IP that
    nobody holds (issue 14.2)."""

    cluster = ha_cluster(base)
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    vip = kube_vip_file(cluster, "eth1", during_init=True)
    hosts["cp1"].data["manifests"] = ["kube-apiserver.yaml", "etcd.yaml", "kube-vip.yaml"]
    hosts["cp1"].data["files"] = {str(vip.path): sha256(vip.content)}
    (init,) = _plan(context(cluster, hosts, tmp_path))["kubeadm init"]
    assert init == KubeadmInit("cp1", reset_first=True, kube_vip=vip)
    assert init.describe().index("reset") < init.describe().index("kube-vip.yaml")


def test_before_init_a_version_change_reruns_only_the_packages_role(
    base: dict, cluster, tmp_path
) -> None:
    """Hosts prepared but not initialised yet (a running cluster is `upgrade`'s work)."""
    ctx = _converged(cluster, tmp_path)
    for found in ctx.facts.hosts.values():
        found.data["exists"] = {}
        found.data["manifests"] = []
    base["kubernetes"] = {"version": "1.33.2"}
    ctx.cluster = load_data(base).cluster
    (converge,) = _plan(ctx)["node setup (Ansible)"]
    assert set(dict(converge.roles).values()) == {("kube_packages",)}


def test_live_drift_is_found_even_with_a_matching_stamp(cluster, tmp_path: Path) -> None:
    ctx = _converged(cluster, tmp_path)
    ctx.facts.hosts["w2"].data["packages"]["kubelet"]["held"] = False
    # The sysctl file the prepare role wrote on cp1 is gone; the live value still holds.
    sysctl_file = "/etc/sysctl.d/99-k8sboot.conf"
    cp1 = ctx.facts.hosts["cp1"].data
    cp1["stamps"]["prepare"] += f"\n{'0' * 64}  {sysctl_file}"
    cp1["files"][sysctl_file] = None
    (converge,) = _plan(ctx)["node setup (Ansible)"]
    assert dict(converge.roles) == {"cp1": ("prepare",), "w2": ("kube_packages",)}
    assert converge.describe() == (
        f"Ansible roles cp1: prepare ({sysctl_file} was deleted since k8sboot wrote it); "
        "w2: kube_packages (kubelet is not held)"
    )
    cp1["files"][sysctl_file] = "1" * 64
    (converge,) = _plan(ctx)["node setup (Ansible)"]
    assert "cp1: prepare (/etc/sysctl.d/99-k8sboot.conf was edited since" in converge.describe()


def test_persisted_swap_and_host_names_are_watched(cluster, tmp_path: Path) -> None:
    """The prepare role comments swap out of /etc/fstab and writes the host's name into
    /etc/hosts: undoing either shows before a reboot would."""
    ctx = _converged(cluster, tmp_path)
    w1, w2 = ctx.facts.hosts["w1"].data, ctx.facts.hosts["w2"].data
    w1["fstab_swap"] = ["/swapfile none swap sw 0 0"]
    w2["hosts_blocks"] = {}
    ctx.facts.hosts["cp1"].data["hosts_blocks"][cluster.name] = ["10.0.0.99 cp1"]
    (converge,) = _plan(ctx)["node setup (Ansible)"]
    assert converge.describe() == (
        "Ansible roles cp1: prepare (/etc/hosts' k8sboot entries were edited); "
        "w1: prepare (/etc/fstab mounts swap again (/swapfile)); "
        "w2: prepare (/etc/hosts lost k8sboot's entries)"
    )
    # The role comments the line out in a container too (only swapoff is beyond it).
    found = ctx.facts.hosts["w1"]
    found.data["container"] = "lxc"
    assert drift(cluster, cluster.host("w1"), found, "prepare", found.stamp("prepare")) == (
        "/etc/fstab mounts swap again (/swapfile)"
    )


def test_stopped_or_disabled_services_are_started_without_ansible(cluster, tmp_path) -> None:
    ctx = _converged(cluster, tmp_path)
    ctx.facts.hosts["w1"].data["services"]["containerd"]["active"] = "failed"
    ctx.facts.hosts["w1"].data["services"]["kubelet"]["active"] = "inactive"
    ctx.facts.hosts["w2"].data["services"]["kubelet"]["enabled"] = "disabled"
    plan = _plan(ctx)
    assert plan["node setup (Ansible)"] == []
    assert [(a.commands, a.describe()) for a in plan["services"]] == [
        (
            (("w1", "systemctl enable --now containerd kubelet"),),
            "enable and start containerd, kubelet (containerd is failed; kubelet is inactive) "
            "on w1",
        ),
        (
            (("w2", "systemctl enable --now kubelet"),),
            "enable and start kubelet (kubelet is disabled at boot) on w2",
        ),
    ]
    # Before kubeadm has configured it, the kubelet has nothing to run: not a fault.
    ctx.facts.hosts["w1"].data["exists"][KUBELET_CONF] = False
    (start,) = [a for a in _plan(ctx)["services"] if a.hosts == ("w1",)]
    assert start.commands == (("w1", "systemctl enable --now containerd"),)


def test_changed_containerd_config_is_rewritten_and_restarted(cluster, tmp_path) -> None:
    ctx = _converged(cluster, tmp_path)
    ctx.facts.hosts["w1"].data["files"]["/etc/containerd/config.toml"] = "edited"
    (write,) = _plan(ctx)["containerd configuration"]
    assert isinstance(write, WriteFiles)
    assert (write.host, write.restart) == ("w1", "containerd")


def test_ha_joins_control_planes_and_places_kube_vip(base: dict, tmp_path: Path) -> None:
    base["hosts"] += [
        {"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]},
        {"name": "cp3", "address": "10.0.0.13", "roles": ["control-plane"]},
    ]
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    cluster = load_data(base).cluster
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    plan = _plan(context(cluster, hosts, tmp_path))
    (init,) = plan["kubeadm init"]
    assert init.host == "cp1" and "super-admin.conf" in init.kube_vip.content
    assert "vip_interface" in init.kube_vip.content and '"eth1"' in init.kube_vip.content
    assert plan["join control planes"] == [KubeadmJoin(("cp2", "cp3"), control_plane=True)]
    *writes, wait = plan["kube-vip"]
    assert [a.host for a in writes] == ["cp1", "cp2", "cp3"]
    assert all("/etc/kubernetes/admin.conf" in a.files[0].content for a in writes)
    assert wait == WaitApiServer("cp1", "10.0.0.10:6443")  # the VIP is dark a moment


def test_the_kube_vip_holding_the_address_is_rewritten_last_once_it_moved_off(
    base: dict, tmp_path: Path
) -> None:
    """Rewritten in place, the holder's kube-vip restarts when its kubelet notices, and a
    request in flight through the address then hangs (an HA `up` lost 30 s to it)."""
    from k8sboot.cluster.kube_vip import RewriteHoldersKubeVip
    from k8sboot.workflows import up

    cluster = ha_cluster(base)
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    hosts["cp1"].data["addresses"].append(
        {"interface": "eth1", "address": "10.0.0.10", "prefix": 32, "mac": ""}
    )
    (step,) = [s for s in up().steps if s.title == "kube-vip"]
    cp2, cp3, holder, wait = step.plan(context(cluster, hosts, tmp_path))
    assert [cp2.host, cp3.host] == ["cp2", "cp3"] and not isinstance(cp2, RewriteHoldersKubeVip)
    assert isinstance(holder, RewriteHoldersKubeVip) and holder.host == "cp1"
    assert "/etc/kubernetes/admin.conf" in holder.files[0].content
    assert wait == WaitApiServer("cp1", "10.0.0.10:6443")


def test_reset_plans_workers_first_and_converges(cluster, tmp_path: Path) -> None:
    ctx = _converged(cluster, tmp_path)
    step = reset(purge_packages=False).steps[0]
    assert [a.hosts for a in step.plan(ctx)] == [("w1",), ("w2",), ("cp1",)]
    clean = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    assert step.plan(context(cluster, clean, tmp_path)) == []


def test_reset_takes_back_a_virtual_ip_left_on_a_clean_host(base: dict, tmp_path: Path) -> None:

    cluster = ha_cluster(base)
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    # cp2 was reset already, but kube-vip was killed holding the address.
    hosts["cp2"].data["addresses"].append(
        {"interface": "eth1", "address": "10.0.0.10", "prefix": 32, "mac": ""}
    )
    (action,) = reset(purge_packages=False).steps[0].plan(context(cluster, hosts, tmp_path))
    ((host, command),) = action.commands
    assert host == "cp2" and "kubeadm reset -f" in command
    assert "ip -o addr show to 10.0.0.10 |" in command and "ip addr del" in command


def test_reset_without_kube_vip_touches_no_address(cluster, tmp_path: Path) -> None:
    ctx = _converged(cluster, tmp_path)
    for action in reset(purge_packages=False).steps[0].plan(ctx):
        assert all("ip addr del" not in command for _, command in action.commands)


def stamps_under(root: Path) -> dict[str, str]:
    """The stamps a host whose / is `root` holds."""
    found = root / "var/lib/k8sboot/stamps"
    if not found.exists():
        return {}
    return {p.name: p.read_text().strip().replace(str(root), "") for p in found.iterdir()}


@pytest.mark.parametrize("failed", [set(), {"w1"}])
def test_stamps_are_recorded_where_every_task_succeeded(
    cluster, tmp_path: Path, monkeypatch, failed: set[str]
) -> None:
    from k8sboot.ansible import PlaybookFailed
    from k8sboot.cluster import node_setup
    from k8sboot.cluster.node_setup import fingerprint, role_vars
    from k8sboot.executor import Executor

    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    ctx = context(cluster, hosts, tmp_path)
    roots = {h.name: tmp_path / "hosts" / h.name for h in cluster.hosts}
    transport = FakeTransport({n: LocalShell(n, root) for n, root in roots.items()})
    ctx.view = ReadOnlyHosts(transport)  # type: ignore[arg-type]
    sysctl_file = "/etc/sysctl.d/99-k8sboot.conf"
    for root in roots.values():  # what the prepare role wrote
        (root / "etc/sysctl.d").mkdir(parents=True)
        (root / sysctl_file[1:]).write_text("net.ipv4.ip_forward = 1\n")
    (converge,) = _plan(ctx)["node setup (Ansible)"]
    given = {}

    def run_playbook(cluster, state, playbook, per_host, extravars, on_event):
        given.update(per_host)
        if failed:
            raise PlaybookFailed("Ansible node.yml failed: w1: task 'x': boom", failed)

    monkeypatch.setattr(node_setup, "run_playbook", run_playbook)
    if failed:
        with pytest.raises(PlaybookFailed):
            Executor(ctx, transport).execute(converge)
    else:
        Executor(ctx, transport).execute(converge)

    assert all("k8sboot_stamps" not in values for values in given.values())
    for host in cluster.hosts:
        stamps = stamps_under(roots[host.name])
        if host.name in failed:
            assert stamps == {}
            continue
        # Read back into the facts as written: the steps after plan from them unprobed.
        on_disk = (roots[host.name] / "var/lib/k8sboot/stamps").iterdir()
        assert ctx.facts.hosts[host.name].data["stamps"] == {
            p.name: p.read_text().strip() for p in on_disk
        }
        wanted = role_vars(cluster, host, hosts[host.name])
        assert set(stamps) == set(wanted)
        # What the next probe sees: the fingerprints, and the owned file as written.
        digest = hashlib.sha256(b"net.ipv4.ip_forward = 1\n").hexdigest()
        seen = fresh(host.name, host.ip)
        seen.data["stamps"] = stamps
        seen.data["files"][sysctl_file] = digest
        seen.data["hosts_blocks"] = {cluster.name: [f"{host.ip} {host.name}"]}
        for role, values in wanted.items():
            assert seen.stamp(role) == fingerprint(role, values)
        assert seen.stamped_files("prepare") == {sysctl_file: digest}
        assert drift(cluster, host, seen, "prepare", seen.stamp("prepare")) is None


def test_containerd_started_before_its_config_was_written_is_restarted(cluster, tmp_path) -> None:
    """A run stopped between writing config.toml and restarting containerd leaves the
    file right and containerd on the old configuration."""
    ctx = _converged(cluster, tmp_path)
    w1 = ctx.facts.hosts["w1"].data
    w1["mtimes"] = {"/etc/containerd/config.toml": 2000.0}
    w1["services"]["containerd"]["since"] = 1000.0
    (write,) = _plan(ctx)["containerd configuration"]
    assert (write.host, write.files, write.restart) == ("w1", (), "containerd")
    w1["services"]["containerd"]["since"] = 3000.0
    assert _plan(ctx)["containerd configuration"] == []


def test_init_stopped_after_the_api_answered_is_resumed_not_reset(
    base: dict, tmp_path: Path
) -> None:
    """admin.conf and the static pods are there and the API answers, but cluster-info,
    which kubeadm init creates late, is not: init stopped half-way. Its remaining phases
    run; nothing is reset under a running control plane (issue 14.2)."""

    cluster = ha_cluster(base)
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    hosts["cp1"].data["exists"] = {ADMIN_CONF: True, KUBELET_CONF: True}
    hosts["cp1"].data["manifests"] = ["etcd.yaml", "kube-apiserver.yaml", "kube-vip.yaml"]
    ctx = context(cluster, hosts, tmp_path, ready("cp1"))
    assert ctx.initialised
    ctx.init_finished = False
    assert not ctx.initialised
    plan = _plan(ctx)
    (init,) = plan["kubeadm init"]
    assert init.resume and not init.reset_first and init.kube_vip is not None
    assert "from wait-control-plane on" in init.describe()
    assert plan["join control planes"] == [KubeadmJoin(("cp2", "cp3"), control_plane=True)]


def test_an_unfinished_init_beside_joined_hosts_is_refused(base: dict, tmp_path: Path) -> None:
    """No cluster-info (or admin.conf refused) while another host has joined: not a
    half-done init (joins come after init); nothing is redone or reset."""

    cluster = ha_cluster(base)
    hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    hosts["cp1"].data["exists"] = {ADMIN_CONF: True, KUBELET_CONF: True}
    hosts["cp1"].data["manifests"] = ["etcd.yaml", "kube-apiserver.yaml"]
    hosts["w1"].data["exists"] = {KUBELET_CONF: True}
    ctx = context(cluster, hosts, tmp_path)
    ctx.init_finished = False
    with pytest.raises(MachineError, match="w1 joined already"):
        _plan(ctx)


def test_calico_applies_its_pinned_operator_release_first(base: dict, tmp_path: Path) -> None:
    """The Tigera operator's manifest is fetched by k8sboot from the pinned URL (or a
    mirror of it), checked against its sha256, applied server-side; its CRDs are waited
    for, then k8sboot's Installation. A new pin changes the stamp: applied again."""
    base["networking"] = {"cni": "calico"}
    cluster = load_data(base).cluster
    ctx = _converged(cluster, tmp_path)
    (apply,) = _plan(ctx)["CNI"]
    assert apply.operator == Fetched(
        "https://raw.githubusercontent.com/projectcalico/calico/v3.29.3/manifests/tigera-operator.yaml",
        "9a9b610ca61d12e4a9387c94cefa389dfd705e23f6a7be0e12d132ed25a9650d",
        PurePosixPath("/etc/k8sboot/tigera-operator.yaml"),
    )
    assert apply.crds == ("installations.operator.tigera.io", "apiservers.operator.tigera.io")
    assert "kind: Installation" in apply.file.content
    ctx.facts.hosts["cp1"].data["stamps"]["cni"] = cni_stamp(apply.file, apply.operator)
    assert _plan(ctx)["CNI"] == []
    base["networking"]["calicoOperator"] = {"url": "http://mirror.internal/tigera.yaml"}
    ctx.cluster = load_data(base).cluster
    assert _plan(ctx)["CNI"] == []  # a mirror of the same release changes nothing
    base["networking"]["calicoOperator"]["sha256"] = "b" * 64
    ctx.cluster = load_data(base).cluster
    (again,) = _plan(ctx)["CNI"]
    assert again.operator.sha256 == "b" * 64
