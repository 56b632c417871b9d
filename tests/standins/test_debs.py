"""The stand-in packages and the flat apt repository (dpkg-dev and apt-utils needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.lab import debs

REQUIRED = os.environ.get("K8SBOOT_LAB_REQUIRED") == "1"
TOOLS = ("dpkg-deb", "dpkg-scanpackages", "apt-ftparchive", "apt-get")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        if REQUIRED:
            pytest.fail(f"missing {missing} (apt-get install dpkg-dev apt-utils)")
        pytest.skip(f"missing {missing} (apt-get install dpkg-dev apt-utils)")
    d = tmp_path_factory.mktemp("repo")
    debs.build_repo(d, ["1.33.1", "1.30.13"])
    return d


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_package_metadata(repo):
    kubeadm = repo / "kubeadm_1.33.1-1.1_amd64.deb"
    assert field(kubeadm, "Package") == "kubeadm"
    assert field(kubeadm, "Version") == "1.33.1-1.1"
    assert "cri-tools" not in field(kubeadm, "Depends")
    assert "cri-tools (>= 1.30.0)" in field(repo / "kubeadm_1.30.13-1.1_amd64.deb", "Depends")
    kubelet = repo / "kubelet_1.33.1-1.1_amd64.deb"
    assert "kubernetes-cni (>= 1.2.0)" in field(kubelet, "Depends")
    files = subprocess.run(
        ["dpkg-deb", "-c", str(kubelet)], check=True, capture_output=True, text=True
    ).stdout
    assert "./usr/lib/systemd/system/kubelet.service" in files
    assert "./usr/bin/kubelet" in files
    files = subprocess.run(
        ["dpkg-deb", "-c", str(kubeadm)], check=True, capture_output=True, text=True
    ).stdout
    assert "./usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf" in files
    assert "standins/_build.json" in files and "apifields/kubeadm.k8s.io_v1beta4_1.33.json" in files


def test_kubeadm_from_the_package_reports_its_version(repo, tmp_path):
    subprocess.run(
        ["dpkg-deb", "-x", str(repo / "kubeadm_1.30.13-1.1_amd64.deb"), str(tmp_path)], check=True
    )
    lib = tmp_path / "usr/lib/k8sboot-standins/kubeadm"
    env = {k: v for k, v in os.environ.items() if not k.startswith("K8SBOOT_STANDIN")}
    out = subprocess.run(
        [
            "python3",
            "-c",
            f"import sys; sys.path.insert(0, {str(lib)!r}); "
            "from standins.kubeadm.cli import main; sys.exit(main())",
            "version",
            "-o",
            "short",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "v1.30.13", out.stderr


def test_kubectl_package_carries_the_matching_real_kubectl(repo, tmp_path):
    if not (debs.KUBECTL_DIR / "kubectl.1.33").exists():
        pytest.skip("no versioned kubectl on this machine")
    subprocess.run(
        ["dpkg-deb", "-x", str(repo / "kubectl_1.33.1-1.1_amd64.deb"), str(tmp_path)], check=True
    )
    out = subprocess.run(
        [str(tmp_path / "usr/bin/kubectl"), "version", "--client"], capture_output=True, text=True
    )
    assert "v1.33" in out.stdout


def test_apt_reads_the_repository_over_http(repo, tmp_path):
    server = debs.serve(repo, "127.0.0.1", 0)
    port = server.server_address[1]
    try:
        (tmp_path / "lists/partial").mkdir(parents=True)
        (tmp_path / "cache/archives/partial").mkdir(parents=True)
        sources = tmp_path / "sources.list"
        sources.write_text(f"deb [trusted=yes] http://127.0.0.1:{port}/ /\n")
        opts = [
            "-o",
            f"Dir::Etc::SourceList={sources}",
            "-o",
            "Dir::Etc::SourceParts=/dev/null",
            "-o",
            f"Dir::State::Lists={tmp_path / 'lists'}",
            "-o",
            f"Dir::Cache={tmp_path / 'cache'}",
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Sandbox::User=root",
        ]
        up = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True)
        assert up.returncode == 0, up.stderr
        policy = subprocess.run(
            ["apt-cache", *opts, "madison", "kubeadm"], capture_output=True, text=True
        ).stdout
        assert "1.33.1-1.1" in policy and "1.30.13-1.1" in policy
    finally:
        server.shutdown()
