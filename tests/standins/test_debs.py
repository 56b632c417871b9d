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


def apt_options(directory: Path, url: str) -> list[str]:
    """apt-get/apt-cache options that read only `deb [trusted=yes] <url> /`, with lists and
    cache under `directory`."""
    (directory / "lists/partial").mkdir(parents=True)
    (directory / "cache/archives/partial").mkdir(parents=True)
    sources = directory / "sources.list"
    sources.write_text(f"deb [trusted=yes] {url} /\n")
    return [
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={directory / 'lists'}",
        "-o",
        f"Dir::Cache={directory / 'cache'}",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Sandbox::User=root",
    ]


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
        opts = apt_options(tmp_path, f"http://127.0.0.1:{port}/")
        up = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True)
        assert up.returncode == 0, up.stderr
        policy = subprocess.run(
            ["apt-cache", *opts, "madison", "kubeadm"], capture_output=True, text=True
        ).stdout
        assert "1.33.1-1.1" in policy and "1.30.13-1.1" in policy
    finally:
        server.shutdown()


def test_each_minor_has_a_repository_of_its_own_as_on_pkgs_k8s_io(repo, tmp_path):
    """pkgs.k8s.io serves one repository per minor (kubernetes/website
    content/en/docs/tasks/administer-cluster/kubeadm/change-package-repository.md:
    `deb [signed-by=...] https://pkgs.k8s.io/core:/stable:/v1.32/deb/ /`): an upgrade must move
    the source to the target minor, because the current minor's repository does not hold it."""
    server = debs.serve(repo, "127.0.0.1", 0)
    port = server.server_address[1]
    try:
        opts = apt_options(tmp_path, f"http://127.0.0.1:{port}/core:/stable:/v1.30/deb/")
        up = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True)
        assert up.returncode == 0, up.stderr
        for package, version in (
            ("kubeadm", "1.30.13-1.1"),
            ("kubelet", "1.30.13-1.1"),
            ("kubectl", "1.30.13-1.1"),
            ("cri-tools", "1.30.0-1.1"),
            ("kubernetes-cni", "1.4.0-1.1"),
        ):
            madison = subprocess.run(
                ["apt-cache", *opts, "madison", package], capture_output=True, text=True
            ).stdout
            assert version in madison, (package, madison)
            assert "1.33" not in madison and "1.6.0" not in madison, (package, madison)
    finally:
        server.shutdown()


def test_a_running_kubelet_keeps_its_version_when_its_package_is_upgraded(repo, tmp_path):
    """An upstream kubelet reports the version linked into its binary
    (kubernetes/kubernetes v1.33.1 staging/src/k8s.io/component-base/version/version.go Get),
    so after `apt-get install kubelet=<newer>` the running one still reports the old
    version until it is restarted; a new process reports the new one."""
    root = tmp_path / "root"
    lib = root / "usr/lib/k8sboot-standins/kubelet"

    def unpack(version: str) -> None:
        deb = repo / f"kubelet_{version}-1.1_amd64.deb"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)

    report = (
        f"import sys; sys.path.insert(0, {str(lib)!r}); from standins import versions; "
        "print(versions.kubernetes_version(), flush=True); sys.stdin.readline(); "
        "print(versions.kubernetes_version(), flush=True)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("K8SBOOT_STANDIN")}
    unpack("1.30.13")
    running = subprocess.Popen(
        ["python3", "-c", report], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert running.stdout.readline().strip() == "v1.30.13"
        unpack("1.33.1")
        after, _ = running.communicate("\n", timeout=30)
    finally:
        running.kill()
    assert after.strip() == "v1.30.13"
    restarted = subprocess.run(
        ["python3", "-c", report], env=env, input="\n", capture_output=True, text=True
    )
    assert restarted.stdout.split() == ["v1.33.1", "v1.33.1"], restarted.stderr


def test_upgrading_the_kubelet_package_does_not_restart_the_kubelet(repo, tmp_path):
    """Upstream's kubelet package reloads units on upgrade and leaves the kubelet running
    (kubernetes/release cmd/krel/templates/latest/kubelet/kubelet.spec: %systemd_post,
    %systemd_postun, no _with_restart): kubeadm's upgrade guide restarts it by hand. A first
    install still enables and starts it (tests/integration/test_standins_lab.py)."""
    if shutil.which("unshare") is None:
        message = "unshare (util-linux) is needed to give the script a systemd directory"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    control = tmp_path / "control"
    subprocess.run(
        ["dpkg-deb", "-e", str(repo / "kubelet_1.33.1-1.1_amd64.deb"), str(control)], check=True
    )
    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "calls"
    (shim / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (shim / "systemctl").chmod(0o755)

    def postinst(*args: str) -> list[str]:
        calls.write_text("")
        # A private /run with systemd's marker directory, so the script sees a systemd host.
        script = (
            "mount -t tmpfs none /run && mkdir -p /run/systemd/system && "
            f"PATH={shim}:$PATH sh {control / 'postinst'} " + " ".join(args)
        )
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return calls.read_text().splitlines()

    assert postinst("configure", "1.32.3-1.1") == ["daemon-reload"]
    assert postinst("configure") == [
        "daemon-reload",
        "enable kubelet.service",
        "restart kubelet.service",
    ]
