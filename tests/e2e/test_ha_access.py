"""How an operator reaches the shared HA cluster (3 control planes behind kube-vip, 2
workers): `k8sboot kubeconfig` for the admin and for a user whose certificate the cluster
CA signs on a control plane, and `k8sboot ssh` to a node (issue 19). Changes nothing the
modules after this one see, but a RoleBinding it deletes again."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.e2e.conftest import KUBECTL, K8sboot, SharedHA


@pytest.fixture(scope="module")
def cluster(ha: SharedHA) -> K8sboot:
    return ha.acquire()


def _kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def test_the_admin_kubeconfig_reaches_the_api_through_the_virtual_ip(cluster: K8sboot) -> None:
    printed = cluster.run("kubeconfig").stdout
    config = yaml.safe_load(printed)
    assert config["clusters"][0]["cluster"]["server"] == f"https://{cluster.lab.subnet}.10:6443"
    path = cluster.workdir / "admin" / "kubeconfig"  # a directory k8sboot makes
    cluster.run("kubeconfig", "--out", str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.read_text() == printed
    nodes = json.loads(_kubectl(path, "get", "nodes", "-o", "json").stdout)["items"]
    assert {n["metadata"]["name"] for n in nodes} == {"cp1", "cp2", "cp3", "w1", "w2"}
    cluster.run("kubeconfig", "--out", str(path))  # the very same: nothing to do
    other = cluster.workdir / "admin" / "other"
    other.write_text("mine\n")
    refused = cluster.run("kubeconfig", "--out", str(other), check=False)
    assert refused.returncode == 2 and str(other) in refused.stderr
    assert other.read_text() == "mine\n"


def test_a_user_kubeconfig_is_signed_by_the_cluster_ca_and_gets_only_its_rights(
    cluster: K8sboot,
) -> None:
    temporary = "sudo ls -A /tmp"
    before = set(cluster.lab.ssh("cp1", temporary).stdout.split())
    printed = cluster.run("kubeconfig", "--user", "alice", "--group", "dev", "--ttl", "1h")
    path = cluster.workdir / "alice.kubeconfig"
    path.write_text(printed.stdout)
    config = yaml.safe_load(printed.stdout)
    user = config["users"][0]["user"]
    certificate = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    left = certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=55) < left <= dt.timedelta(hours=1, minutes=1), left
    # Authenticated as alice (`kubectl auth whoami` speaks protobuf, which the API server
    # stand-in does not), with no rights of her own; her group gets some below.
    denied = _kubectl(path, "get", "pods", "-n", "default", check=False)
    assert 'User "alice" cannot list resource "pods"' in denied.stderr, denied.stderr
    admin = cluster.state / "kubeconfig"
    binding = cluster.workdir / "dev-pods.yaml"  # applied as JSON: the stand-in reads no protobuf
    rbac = "rbac.authorization.k8s.io"
    binding.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": f"{rbac}/v1",
                    "kind": "Role",
                    "metadata": {"name": "pod-reader", "namespace": "default"},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
                },
                {
                    "apiVersion": f"{rbac}/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "dev-pod-reader", "namespace": "default"},
                    "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "pod-reader"},
                    "subjects": [{"apiGroup": rbac, "kind": "Group", "name": "dev"}],
                },
            ]
        )
    )
    _kubectl(admin, "apply", "-f", str(binding))
    try:
        assert _kubectl(path, "get", "pods", "-n", "default").returncode == 0
    finally:
        _kubectl(admin, "delete", "-f", str(binding))
    # The user's key went to stdout only: no run log holds it, no file is left behind on
    # the control plane that signed it.
    key_body = base64.b64decode(user["client-key-data"]).decode().splitlines()[1]
    logs = list(cluster.state.rglob("*.log"))
    assert logs and not [p for p in logs if key_body in p.read_text(errors="replace")]
    assert set(cluster.lab.ssh("cp1", temporary).stdout.split()) <= before


def test_ssh_runs_a_command_on_a_node_as_the_ssh_user(cluster: K8sboot) -> None:
    assert cluster.run("ssh", "w1", "--", "hostname").stdout.strip() == "w1"
    whoami = cluster.run("ssh", "cp2", "--", "whoami").stdout.strip()
    assert whoami == cluster.lab.machine("cp2").ssh_user
    failed = cluster.run("ssh", "w2", "--", "exit 7", check=False)
    assert failed.returncode == 7
    unknown = cluster.run("ssh", "w9", "--", "true", check=False)
    assert unknown.returncode == 2 and "w9 is not in the cluster file" in unknown.stderr
    # Byte for byte through a pipe: no terminal was asked for.
    piped = cluster.run("ssh", "cp1", "--", "uname -n").stdout
    assert piped == "cp1\n"
    assert os.environ.get("K8SBOOT_FILE") is None  # the module's own cluster file was used
