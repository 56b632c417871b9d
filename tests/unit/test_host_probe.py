"""The host probe (k8sboot/probes/host.py) run for real with a made-up `systemctl`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k8sboot.facts import (
    SEPARATOR,
    ClusterView,
    HostFacts,
    ProbeRequest,
    ServiceState,
    probe_cluster,
)
from k8sboot.transport import CommandFailed, CommandResult

# What `systemctl show --property=...` prints (systemd's src/systemctl/systemctl-show.c:
# one `Key=value` line per property, a blank line between units, in the order asked for).
# ExecMainStartTimestampMonotonic is in microseconds on CLOCK_MONOTONIC, 0 when the
# service has not started.
FAKE_SYSTEMCTL = """#!{python}
import time
ago = {{"containerd": 5, "etcd": 0}}
units = [a for a in __import__("sys").argv[1:] if not a.startswith("-")][1:]
blocks = []
for unit in units:
    started = int((time.monotonic() - ago[unit]) * 1e6) if ago[unit] else 0
    state = "active" if started else "inactive"
    blocks.append(
        f"Id={{unit}}.service\\nActiveState={{state}}\\nUnitFileState=enabled\\n"
        f"ExecMainStartTimestampMonotonic={{started}}"
    )
print("\\n\\n".join(blocks))
"""


def test_probe_reports_when_each_service_started(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL.format(python=sys.executable))
    systemctl.chmod(0o755)
    request = ProbeRequest(services=("containerd", "etcd"), packages=(), exists=(), busy=())
    done = subprocess.run(
        [sys.executable, "-"],
        input=request.script(),
        capture_output=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        check=True,
        timeout=60,
    )
    services = json.loads(done.stdout)["services"]
    assert services["containerd"]["active"] == "active"
    assert abs(services["containerd"]["since"] - (time.time() - 5)) < 2
    assert services["etcd"] == {"active": "inactive", "enabled": "enabled", "since": None}


class _Answer:
    name = "cp1"

    def __init__(self, cluster_info: str, exit_code: int = 0, stderr: str = ""):
        self.cluster_info = cluster_info
        self.exit_code, self.stderr = exit_code, stderr
        self.commands: list[str] = []

    def run(self, command: str, **_: object) -> CommandResult:
        self.commands.append(command)
        nodes = {"items": [{"metadata": {"name": "cp1"}, "status": {}}]}
        out = f"{json.dumps(nodes)}\n{SEPARATOR}\n{self.cluster_info}" if not self.exit_code else ""
        return CommandResult("cp1", command, self.exit_code, out.encode(), self.stderr, 0.1)

    ask = run  # a question runs as any command here


def test_cluster_view_tells_a_finished_init_by_cluster_info() -> None:
    """kubeadm creates kube-public/cluster-info in init's bootstrap-token phase
    (kubernetes v1.33.0 cmd/kubeadm/app/phases/bootstraptoken/clusterinfo/clusterinfo.go),
    after upload-config; `kubectl get --ignore-not-found -o name` prints nothing when it is
    missing."""
    done = _Answer("configmap/cluster-info\n")
    view = probe_cluster(done)  # type: ignore[arg-type]
    assert set(view.nodes) == {"cp1"} and view.init_finished
    assert "-n kube-public get configmap cluster-info" in done.commands[0]
    assert probe_cluster(_Answer("")).init_finished is False  # type: ignore[arg-type]


def test_admin_conf_refused_is_an_init_that_stopped_early() -> None:
    """kubeadm 1.29+ binds admin.conf's group kubeadm:cluster-admins to cluster-admin with
    super-admin.conf once the API answers (kubernetes v1.33.0
    cmd/kubeadm/app/phases/kubeconfig/kubeconfig.go, EnsureAdminClusterRoleBinding); before
    that, kubectl with admin.conf gets `Error from server (Forbidden)`."""
    forbidden = _Answer(
        "",
        1,
        'Error from server (Forbidden): nodes is forbidden: User "kubernetes-admin" cannot '
        'list resource "nodes" in API group "" at the cluster scope',
    )
    view = probe_cluster(forbidden)  # type: ignore[arg-type]
    assert view == ClusterView({}, init_finished=False)
    unauthorized = _Answer("", 1, "error: You must be logged in to the server (Unauthorized)")
    with pytest.raises(CommandFailed, match="Unauthorized"):
        probe_cluster(unauthorized)  # type: ignore[arg-type]


def test_an_api_that_does_not_answer_is_observed_not_fatal() -> None:
    """Refused, timed out, or its etcd without quorum: the view says so and why; whether
    init finished is unknown, and never taken as unfinished (that would plan kubeadm init
    over the cluster)."""
    refused = "The connection to the server 10.0.0.10:6443 was refused - did you specify..."
    timed_out = "Unable to connect to the server: net/http: request canceled (Client.Timeout)"
    for said in (refused, timed_out, "Error from server: etcdserver: request timed out"):
        view = probe_cluster(_Answer("", 1, said))  # type: ignore[arg-type]
        assert (view.api.host, view.api.answers, view.api.reason) == ("cp1", False, said)
        assert view.nodes == {} and view.init_finished


def test_probe_reports_where_etcd_links_point(tmp_path: Path) -> None:
    """k8sboot's etcd tools are links into /opt/k8sboot/etcd/v<version>/: the probe says
    where each points (None for a plain file or nothing), and the facts read the version."""
    release = tmp_path / "opt" / "v3.5.16"
    release.mkdir(parents=True)
    (release / "etcdctl").write_text("")
    (tmp_path / "etcdctl").symlink_to(release / "etcdctl")
    (tmp_path / "etcdutl").write_text("")  # a distribution's binary, not k8sboot's
    paths = tuple(str(tmp_path / n) for n in ("etcdctl", "etcdutl", "etcd"))
    request = ProbeRequest(packages=(), services=(), exists=(), busy=(), links=paths)
    done = subprocess.run(
        [sys.executable, "-"], input=request.script(), capture_output=True, check=True, timeout=60
    )
    links = json.loads(done.stdout)["links"]
    assert links == {paths[0]: str(release / "etcdctl"), paths[1]: None, paths[2]: None}
    facts = HostFacts(
        "cp1", {"links": {"/usr/local/bin/etcdctl": "/opt/k8sboot/etcd/v3.5.16/etcdctl"}}
    )
    assert facts.etcd_linked("/usr/local/bin/etcdctl") == "3.5.16"
    assert facts.etcd_linked("/usr/local/bin/etcdutl") is None


def test_probe_reads_the_version_each_static_pod_runs(tmp_path: Path) -> None:
    """kubeadm writes the image with its tag into each manifest (cmd/kubeadm/app/phases/
    controlplane/manifests.go, `Image: images.GetKubernetesImage(...)`): the tag is the
    version the pod runs, which `kubeadm upgrade` moves."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "kube-apiserver.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n"
        "    image: registry.k8s.io/kube-apiserver:v1.32.3\n    name: kube-apiserver\n"
    )
    (manifests / "etcd.yaml").write_text(
        "spec:\n  containers:\n  - image: registry.k8s.io/etcd:3.5.16-0\n"
    )
    request = ProbeRequest(services=(), packages=(), exists=(), busy=())
    script = request.script().replace(
        b'"/etc/kubernetes/manifests"', json.dumps(str(manifests)).encode(), 1
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, check=True, timeout=60
    )
    found = HostFacts("cp1", json.loads(done.stdout))
    assert found.control_plane_version == "1.32.3"
    assert found.etcd_manifest_version == "3.5.16"


def test_a_service_reads_as_a_typed_state() -> None:
    found = HostFacts(
        "cp1",
        {"services": {"etcd": {"active": "failed", "enabled": "enabled", "since": 12.5}}},
    )
    assert found.service("etcd") == ServiceState("failed", "enabled", 12.5)
    assert found.service("kubelet") == ServiceState("unknown", "unknown", None)
    assert not found.active("etcd") and found.enabled("etcd")


def test_probe_reads_swap_in_fstab_and_k8sboot_blocks_in_hosts(tmp_path: Path) -> None:
    fstab, hosts = tmp_path / "fstab", tmp_path / "hosts"
    fstab.write_text(
        "UUID=1 / ext4 errors=remount-ro 0 1\n"
        "# /swap.img none swap sw 0 0  # k8sboot: the kubelet needs swap off\n"
        "/swapfile none swap sw 0 0\n"
    )
    hosts.write_text(
        "127.0.0.1 localhost\n# BEGIN k8sboot cluster lab\n10.0.0.21   w1\n"
        "# END k8sboot cluster lab\n10.0.0.5 other\n"
    )
    request = ProbeRequest(services=(), packages=(), exists=(), busy=())
    script = (
        request.script()
        .replace(b'"/etc/fstab"', json.dumps(str(fstab)).encode())
        .replace(b'"/etc/hosts"', json.dumps(str(hosts)).encode())
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, check=True, timeout=60
    )
    found = HostFacts("w1", json.loads(done.stdout))
    assert found.fstab_swap == ["/swapfile none swap sw 0 0"]
    assert found.hosts_block("lab") == ["10.0.0.21 w1"]
    assert found.hosts_block("other") is None
