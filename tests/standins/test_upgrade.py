"""`kubeadm upgrade plan|apply|node` on a stand-in cluster on this machine (1 control plane
and 1 worker on 127.0.1.x), from v1.31.5 to v1.32.3 (then v1.32.4 through `upgrade node`),
as kubeadm 1.31+ does it. Each stage is a module fixture that records what a test checks, so
that the tests pass in any order: a stage runs once, after the stages it builds on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.lab.standins import pki

from .harness import LAB

pytestmark = [pytest.mark.lab, pytest.mark.slow]

OLD, NEW, NEWER = "v1.31.5", "v1.32.3", "v1.32.4"
KUBERNETES_VERSION, WORKERS = OLD, 1  # the conftest's cluster fixture
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def tag(node, component: str, directory: str = "etc/kubernetes/manifests") -> str:
    pod = yaml.safe_load((node.root / directory / f"{component}.yaml").read_text())
    return pod["spec"]["containers"][0]["image"].rsplit(":", 1)[1]


def tags(node) -> dict[str, str]:
    return {c: tag(node, c) for c in COMPONENTS}


def api(lab):
    """A client that rides out the API server's restarts (a manifest changed, the kubelet
    restarted), as kubeadm's own calls do."""
    client = lab.client()
    client.retry_for = 60
    return client


def cluster_config(lab) -> dict:
    cm = api(lab).get("ConfigMap", "kubeadm-config", "kube-system")
    return yaml.safe_load(cm["data"]["ClusterConfiguration"])


def serial(node, name: str = "apiserver") -> int:
    return pki.load_cert((node.root / f"etc/kubernetes/pki/{name}.crt").read_bytes()).serial_number


def kept(node) -> list[Path]:
    """What kubeadm left under /etc/kubernetes/tmp, oldest first."""
    return sorted((node.root / "etc/kubernetes/tmp").iterdir(), key=lambda p: p.stat().st_mtime)


def kubelet_versions(lab) -> dict[str, str]:
    nodes = api(lab).list("Node")
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes}


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def lab(cluster, cni):
    return cluster


@pytest.fixture(scope="module")
def before(lab):
    """Plans and refusals on the v1.31.5 cluster, each with the kubeadm package that the
    command would run with (the target's)."""
    cp = lab.cp
    out = {
        "plan": ok(cp.kubeadm("upgrade", "plan", NEW, version=NEW)),
        "plan_json": ok(cp.kubeadm("upgrade", "plan", NEW, "-o", "json", version=NEW)),
        "skip_minor": cp.kubeadm("upgrade", "apply", "v1.33.1", "-y", version="v1.33.1"),
        "old_kubeadm": cp.kubeadm("upgrade", "apply", NEW, "-y", version=OLD),
        "unanswered": cp.kubeadm("upgrade", "apply", NEW, version=NEW, stdin="n\n"),
        "tags": tags(cp),
        "version": cluster_config(lab)["kubernetesVersion"],
        "serial": serial(cp),
    }
    # A control plane whose scheduler manifest is gone (kubeadm killed between moving the
    # old manifest out and the new one in): preflight names it.
    manifest = cp.root / "etc/kubernetes/manifests/kube-scheduler.yaml"
    aside = cp.root / "kube-scheduler.yaml"
    manifest.rename(aside)
    try:
        out["missing"] = cp.kubeadm("upgrade", "apply", NEW, "-y", version=NEW)
    finally:
        aside.rename(manifest)
    return out


@pytest.fixture(scope="module")
def upgraded(lab, before):
    """`kubeadm upgrade apply v1.32.3 -y` killed once the new kube-apiserver manifest is in
    place, then run again to the end."""
    cp = lab.cp
    env = cp.env(NEW)
    cmd = [sys.executable, "-m", "standins.kubeadm", "upgrade", "apply", NEW, "-y"]
    first = subprocess.Popen(cmd, cwd=LAB, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lab.wait("the new kube-apiserver manifest", lambda: tag(cp, "kube-apiserver") == NEW, 120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    out = {"killed_tags": tags(cp), "killed_version": cluster_config(lab)["kubernetesVersion"]}
    out["apply"] = cp.kubeadm("upgrade", "apply", NEW, "-y", version=NEW, timeout=600)
    out["tags"] = tags(cp)
    out["config"] = cluster_config(lab)
    out["kept"] = kept(cp)
    out["serial"] = serial(cp)
    out["server"] = json.loads(lab.kubectl("version", "-o", "json").stdout)["serverVersion"]
    proxy = api(lab).get("DaemonSet", "kube-proxy", "kube-system")
    out["proxy_image"] = proxy["spec"]["template"]["spec"]["containers"][0]["image"]
    return out


@pytest.fixture(scope="module")
def workers_upgraded(lab, upgraded):
    """`kubeadm upgrade node` on the worker (its config.yaml edited by hand before), then the
    kubelet packages of v1.32.3 on both nodes and the kubelets restarted."""
    w1 = lab.nodes["w1"]
    config = w1.root / "var/lib/kubelet/config.yaml"
    edited = dict(yaml.safe_load(config.read_text()), maxPods=42)
    config.write_text(yaml.safe_dump(edited))
    out = {"node": w1.kubeadm("upgrade", "node", version=NEW), "config": config.read_text()}
    out["kept"] = kept(w1)
    out["manifests"] = sorted(p.name for p in (w1.root / "etc/kubernetes/manifests").glob("*"))
    out["before_restart"] = kubelet_versions(lab)
    for node in (lab.cp, w1):
        node.restart_kubelet(NEW)
    lab.wait(
        "the kubelets to report v1.32.3", lambda: set(kubelet_versions(lab).values()) == {NEW}, 90
    )
    out["after_restart"] = kubelet_versions(lab)
    return out


@pytest.fixture(scope="module")
def converged(lab, workers_upgraded):
    """`upgrade apply` and `upgrade plan` once more, on the upgraded cluster."""
    cp = lab.cp
    seen = set(kept(cp))
    out = {"apply": cp.kubeadm("upgrade", "apply", NEW, "-y", version=NEW, timeout=300)}
    out["new"] = [p for p in kept(cp) if p not in seen]
    out["plan_json"] = cp.kubeadm("upgrade", "plan", NEW, "-o", "json", version=NEW)
    out["downgrade"] = cp.kubeadm("upgrade", "apply", "v1.30.13", "-y", version=NEW)
    out["patch_downgrade"] = cp.kubeadm(
        "upgrade", "apply", "v1.32.1", "--dry-run", version="v1.32.1"
    )
    out["tags"] = tags(cp)
    return out


@pytest.fixture(scope="module")
def control_plane_node(lab, converged):
    """`kubeadm upgrade node --certificate-renewal=false` on the control plane after another
    control plane's `upgrade apply v1.32.4` would have uploaded kubeadm-config (patched here)."""
    cp = lab.cp
    client = api(lab)
    cm = client.get("ConfigMap", "kubeadm-config", "kube-system")
    doc = yaml.safe_load(cm["data"]["ClusterConfiguration"])
    cm["data"]["ClusterConfiguration"] = yaml.safe_dump(dict(doc, kubernetesVersion=NEWER))
    client.update(cm)
    serial_before = serial(cp)
    done = cp.kubeadm("upgrade", "node", "--certificate-renewal=false", version=NEWER, timeout=600)
    return {"node": done, "tags": tags(cp), "serial": (serial_before, serial(cp))}


# --- plan --------------------------------------------------------------------------------


def test_plan_json_lists_each_component_per_node_with_its_target(before):
    """kubernetes v1.32.3 cmd/kubeadm/app/apis/output/v1alpha3/types.go UpgradePlan and
    cmd/kubeadm/app/cmd/upgrade/plan.go genAvailableUpgrade; with a [version] argument the
    OfflineVersionGetter answers both lookups (phases/upgrade/versiongetter.go), so the one
    upgrade is described as the current series' patch (phases/upgrade/compute.go)."""
    plan = json.loads(before["plan_json"].stdout)
    assert plan["kind"] == "UpgradePlan"
    assert plan["apiVersion"] == "output.kubeadm.k8s.io/v1alpha3"
    [upgrade] = plan["availableUpgrades"]
    assert upgrade["description"] == "version in the v1.31 series"
    rows = {(c["name"], c.get("nodeName", "")): c for c in upgrade["components"]}
    for key in [("kubelet", "cp1"), ("kubelet", "w1"), *((c, "cp1") for c in COMPONENTS)]:
        assert (rows[key]["currentVersion"], rows[key]["newVersion"]) == (OLD, NEW), key
    assert (rows[("kube-proxy", "")]["currentVersion"], rows[("kube-proxy", "")]["newVersion"]) == (
        "1.31.5",
        NEW,
    )
    assert rows[("kubeadm", "")]["newVersion"] == NEW
    assert rows[("etcd", "cp1")]["currentVersion"].endswith("-0")
    assert [s["group"] for s in plan["configVersions"]] == [
        "kubeproxy.config.k8s.io",
        "kubelet.config.k8s.io",
    ]
    assert before["plan_json"].stdout.lstrip().startswith("{")  # nothing but the object


def test_plan_text_shows_the_tables_and_the_apply_command(before):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/upgrade/plan.go printAvailableUpgrade."""
    out = before["plan"].stdout
    assert "[upgrade/versions] Cluster version: 1.31.5" in out
    assert f"[upgrade/versions] Target version: {NEW}" in out
    assert "Upgrade to the latest version in the v1.31 series:" in out
    lines = out.splitlines()
    assert lines[lines.index("COMPONENT   NODE      CURRENT   TARGET") + 1].split() == [
        "kubelet",
        "cp1",
        OLD,
        NEW,
    ]
    assert any(line.split() == ["kube-apiserver", "cp1", OLD, NEW] for line in lines)
    assert f"\tkubeadm upgrade apply {NEW}" in lines
    assert "Note: Before you can perform this upgrade" not in out


def test_plan_on_an_upgraded_cluster_prints_nothing(converged):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/upgrade/plan.go runPlan: no upgrade available
    returns before printing (the "up-to-date" message is klog -v=1 only)."""
    done = ok(converged["plan_json"])
    assert done.stdout == ""


# --- refusals ----------------------------------------------------------------------------


def test_skipping_a_minor_is_refused_before_anything_changes(lab, before):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/policy.go EnforceVersionPolicies
    (MaximumAllowedMinorVersionUpgradeSkew = 1), a mandatory error of the apply preflight
    (cmd/kubeadm/app/cmd/phases/upgrade/apply/preflight.go)."""
    done = before["skip_minor"]
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error execution phase preflight: the version argument is invalid due to these fatal "
        'errors:\n\n\t- Specified version to upgrade to "v1.33.1" is too high; kubeadm can '
        "upgrade only 1 minor version at a time\n"
    ), done.stderr
    assert before["tags"] == dict.fromkeys(COMPONENTS, OLD)
    assert before["version"] == OLD


def test_a_kubeadm_older_than_the_target_is_refused(before):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/policy.go: a target one minor
    above kubeadm's own is mandatory-refused."""
    done = before["old_kubeadm"]
    assert done.returncode == 1
    assert (
        'Specified version to upgrade to "v1.32.3" is at least one minor release higher than '
        "the kubeadm minor release (32 > 31). Such an upgrade is not supported" in done.stderr
    )


def test_apply_without_yes_asks_and_stops_unless_answered_y(before):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/util/cmdutil.go InteractivelyConfirmAction,
    called by the apply preflight unless -y, -f or --dry-run."""
    done = before["unanswered"]
    assert done.returncode == 1
    assert "[upgrade] Are you sure you want to proceed? [y/N]: " in done.stdout
    assert "won't proceed; the user didn't answer (Y|y) in order to continue" in done.stderr


def test_a_missing_static_pod_manifest_fails_the_preflight(before):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/health.go staticPodManifestHealth."""
    done = before["missing"]
    assert done.returncode == 1
    assert "[ERROR StaticPodManifest]: The control plane seems to be Static Pod-hosted" in (
        done.stderr
    )
    assert "/etc/kubernetes/manifests/kube-scheduler.yaml" in done.stderr


def test_downgrades_by_two_minors_are_refused_a_patch_downgrade_is_not(converged):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/policy.go: more than one minor down
    is mandatory-refused; a lower patch of the same minor passes every rule (k8sboot must
    refuse it itself)."""
    done = converged["downgrade"]
    assert done.returncode == 1
    assert (
        'Specified version to downgrade to "v1.30.13" is too low; kubeadm can downgrade only 1 '
        "minor version at a time" in done.stderr
    )
    assert (
        ok(converged["patch_downgrade"])
        .stdout.rstrip()
        .endswith("[upgrade/successful] Finished dryrunning successfully!")
    )
    assert converged["tags"] == dict.fromkeys(COMPONENTS, NEW)


# --- apply -------------------------------------------------------------------------------


def test_an_interrupted_apply_converges_when_run_again(upgraded):
    """kubernetes/website content/en/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade.md
    (Recovering from a failure state: `kubeadm upgrade` is idempotent); the new manifest of
    each component goes in before the next is touched and kubeadm-config is uploaded last
    (kubernetes v1.32.3 cmd/kubeadm/app/cmd/upgrade/apply.go phase order)."""
    assert upgraded["killed_tags"]["kube-apiserver"] == NEW
    assert upgraded["killed_tags"]["kube-scheduler"] == OLD
    assert upgraded["killed_version"] == OLD
    done = ok(upgraded["apply"])
    assert (
        "[upgrade/staticpods] Current and new manifests of kube-apiserver are equal, skipping "
        "upgrade" in done.stdout
    )
    assert f'[upgrade] SUCCESS! A control plane node of your cluster was upgraded to "{NEW}".' in (
        done.stdout
    )
    assert upgraded["tags"] == dict.fromkeys(COMPONENTS, NEW)


def test_apply_uploads_kubeadm_config_and_the_api_server_reports_the_new_version(upgraded):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/phases/upgrade/apply/uploadconfig.go (the
    ClusterConfiguration in the new kubeadm's API version); the API server's /version is the
    one of its image (the kubelet stand-in runs the tag's version)."""
    assert upgraded["config"]["kubernetesVersion"] == NEW
    assert upgraded["config"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert upgraded["server"]["gitVersion"] == NEW


def test_apply_keeps_the_old_manifests_and_a_copy_of_etcds_data(lab, upgraded):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/staticpods.go: the old manifests in
    /etc/kubernetes/tmp/kubeadm-backup-manifests-<date>-<time>, etcd's data directory copied
    into kubeadm-backup-etcd-<date>-<time> before the etcd versions are compared, both kept
    (keepManifestDir, keepEtcdDir with --etcd-upgrade); the temporary manifests directory of
    the completed run removed."""
    names = [p.name for p in upgraded["kept"]]
    manifests = [p for p in upgraded["kept"] if p.name.startswith("kubeadm-backup-manifests-")]
    etcd = [p for p in upgraded["kept"] if p.name.startswith("kubeadm-backup-etcd-")]
    assert len(manifests) == 2 and len(etcd) == 2, names  # the killed run's and the re-run's
    killed, rerun = manifests
    assert tag(lab.cp, "kube-apiserver", str(killed.relative_to(lab.cp.root))) == OLD
    assert sorted(p.name for p in rerun.iterdir()) == [
        "kube-controller-manager.yaml",
        "kube-scheduler.yaml",
    ]
    assert (etcd[-1] / "etcd/member/snap/db").stat().st_size > 0
    assert etcd[-1].stat().st_mode & 0o777 == 0o700
    upgraded_dirs = [n for n in names if n.startswith("kubeadm-upgraded-manifests")]
    assert len(upgraded_dirs) == 1  # the killed run's, left behind as upstream leaves it


def test_apply_renews_the_certificates_of_the_components_it_upgrades(before, upgraded):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/staticpods.go renewCertsByComponent
    (--certificate-renewal defaults to true)."""
    assert upgraded["serial"] != before["serial"]


def test_addons_are_upgraded_with_the_last_control_plane(upgraded):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/phases/upgrade/addons.go: kube-proxy and CoreDNS
    once UnupgradedControlPlaneInstances is empty (one control plane here)."""
    assert upgraded["proxy_image"].endswith(f"/kube-proxy:{NEW}")
    assert "[addons] Applied essential addon: kube-proxy" in upgraded["apply"].stdout


def test_apply_writes_the_kubelet_configuration_and_backs_up_the_old_one(upgraded):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/postupgrade.go WriteKubeletConfigFiles."""
    out = upgraded["apply"].stdout
    assert (
        "[upgrade] Backing up kubelet config file to /etc/kubernetes/tmp/kubeadm-kubelet-config"
        in out
    )
    assert (
        '[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/config.yaml"'
        in out
    )


def test_a_converged_apply_changes_no_manifest(converged):
    """kubernetes v1.32.3 cmd/kubeadm/app/phases/upgrade/staticpods.go upgradeComponent: equal
    manifests are skipped, so the new backup directory stays empty."""
    out = ok(converged["apply"]).stdout
    for component in COMPONENTS:
        assert (
            f"[upgrade/staticpods] Current and new manifests of {component} are equal, skipping "
            "upgrade" in out
        )
    [manifests] = [p for p in converged["new"] if p.name.startswith("kubeadm-backup-manifests-")]
    assert list(manifests.iterdir()) == []


# --- node --------------------------------------------------------------------------------


def test_upgrade_node_on_a_worker_rewrites_only_the_kubelet_configuration(workers_upgraded):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/upgrade/node.go: a node without a kube-apiserver
    manifest skips the control-plane and addon phases; the kubelet-config phase writes
    config.yaml from the kubelet-config ConfigMap after backing it up."""
    done = ok(workers_upgraded["node"])
    assert "[upgrade] Skipping phase. Not a control plane node." in done.stdout
    assert "[upgrade/addon] Skipping the addon/kube-proxy phase. Not a control plane node." in (
        done.stdout
    )
    assert "maxPods" not in workers_upgraded["config"]
    [backup] = [p for p in workers_upgraded["kept"] if p.name.startswith("kubeadm-kubelet-config")]
    assert yaml.safe_load((backup / "config.yaml").read_text())["maxPods"] == 42
    assert workers_upgraded["manifests"] == []


def test_kubelets_report_the_version_of_the_package_once_restarted(workers_upgraded):
    """A kubelet reports the version it runs in status.nodeInfo.kubeletVersion (kubernetes
    v1.32.3 pkg/kubelet/nodestatus/setters.go VersionInfo): the old one until restarted with
    the new package (kubeadm upgrade node does not restart it)."""
    assert workers_upgraded["before_restart"] == {"cp1": OLD, "w1": OLD}
    assert workers_upgraded["after_restart"] == {"cp1": NEW, "w1": NEW}


def test_upgrade_node_on_a_control_plane_follows_kubeadm_config(control_plane_node):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/phases/upgrade/node/controlplane.go: the static
    Pods move to kubeadm-config's kubernetesVersion (uploaded by `upgrade apply` on another
    control plane); --certificate-renewal=false leaves the certificates as they were."""
    ok(control_plane_node["node"])
    assert control_plane_node["tags"] == dict.fromkeys(COMPONENTS, NEWER)
    before, after = control_plane_node["serial"]
    assert before == after


def test_upgrade_requires_a_subcommand_and_apply_a_version(lab):
    """kubernetes v1.32.3 cmd/kubeadm/app/cmd/upgrade/upgrade.go (RequireSubcommand) and
    cmd/upgrade/apply.go newApplyData (ValidateExactArgNumber)."""
    bare = lab.cp.kubeadm("upgrade")
    assert bare.returncode == 1
    assert 'missing subcommand; "upgrade" is not meant to be run on its own' in bare.stderr
    no_version = lab.cp.kubeadm("upgrade", "apply", "-y")
    assert no_version.returncode == 1
    assert "missing one or more required arguments. Required arguments: [version]" in (
        no_version.stderr
    )
