"""pytest fixtures that hand tests a running lab (registered by tests/conftest.py).

Fixtures
  lab           session: a running Lab (default 1 control plane + 2 workers), torn down at
                the end of the session with nothing left behind
  healthy_lab   function: the session lab with every machine running and connected before
                and after the test (for tests that stop or partition machines)
  lab_required  session: skip (or fail in CI) unless the host can run a lab
  vagrant_cli   session: skip (or fail in CI) unless `vagrant` is installed; for tests of the
                Vagrantfile that need no machines (and no root)
  kube_packages session: the stand-in kubeadm/kubelet/kubectl packages (tests/lab/debs.py)
                in a flat apt repository served on the lab's bridge; its `url` goes into a
                cluster file as `packages: {source: mirror, url: ...}`

Skip policy: outside CI, a lab test that cannot run here (not root, tools missing) is skipped
with the reason. With K8SBOOT_LAB_REQUIRED=1 (CI sets it) it fails with the reason instead.
A lab that has what it needs but fails to come up is always an error.

Environment
  K8SBOOT_LAB_REQUIRED=1   fail instead of skip
  K8SBOOT_LAB_SHAPE=C,W,E  session lab size: control planes, workers, etcd hosts (1,2,0)
  K8SBOOT_LAB_INDEX=N      lab index: bridge k8sb<N>, 10.213.<N>.0/24 (0)
  K8SBOOT_LAB_BACKEND      vagrant (default) or lxc (plain LXC, no Vagrant state)
  K8SBOOT_LAB_KEEP=1       keep the lab after the session and reuse it next time (for
                           iterating on tests; never in CI)

Every test that uses these fixtures is marked `lab` automatically, so `-m lab` and
`-m "not lab"` select them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.lab import Lab, LabError, Shape

LAB_FIXTURES = {
    "lab",
    "healthy_lab",
    "lab_required",
    "vagrant_cli",
    "kube_packages",
    "e2e_lab",
    "k8sboot",
}
# Kubernetes versions the lab serves packages for: the default, and the last v1beta3 one.
LAB_KUBE_VERSIONS = ("1.33.1", "1.32.3", "1.31.5", "1.30.13")
REPO_PORT = 8090
REQUIRED_TOOLS = {
    "vagrant": "vagrant",
    "lxc-start": "lxc",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "ssh": "openssh-client",
}
VAGRANT_LXC_PLUGIN = Path("/usr/share/vagrant-plugins/plugins.d/vagrant-lxc.json")


def lab_required_by_env() -> bool:
    return os.environ.get("K8SBOOT_LAB_REQUIRED", "") == "1"


def unavailable_reason() -> str | None:
    """Why a lab cannot run on this host, or None if it can."""
    if os.geteuid() != 0:
        return "the lab needs root (LXC containers, bridges)"
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        return f"lab tools missing: {', '.join(missing)} (run .ci/lab-deps)"
    if not VAGRANT_LXC_PLUGIN.exists():
        return "the vagrant-lxc plugin is not installed (run .ci/lab-deps)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem at /sys/fs/cgroup"
    return None


def skip_or_fail(reason: str) -> None:
    if lab_required_by_env():
        pytest.fail(
            f"lab required (K8SBOOT_LAB_REQUIRED=1) but cannot run: {reason}", pytrace=False
        )
    pytest.skip(reason)


def session_shape() -> Shape:
    raw = os.environ.get("K8SBOOT_LAB_SHAPE", "").strip()
    if not raw:
        return Shape()
    try:
        cps, workers, etcd = (int(x) for x in raw.split(","))
    except ValueError:
        raise pytest.UsageError(f"K8SBOOT_LAB_SHAPE={raw!r}: expected C,W,E e.g. 1,2,0") from None
    return Shape(cps, workers, etcd)


@pytest.fixture(scope="session")
def lab_required() -> None:
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)


@pytest.fixture(scope="session")
def vagrant_cli() -> None:
    if shutil.which("vagrant") is None:
        skip_or_fail("vagrant is not installed (run .ci/lab-deps)")


@pytest.fixture(scope="session")
def lab(lab_required: None) -> Iterator[Lab]:
    keep = os.environ.get("K8SBOOT_LAB_KEEP", "") == "1"
    instance = Lab(
        index=int(os.environ.get("K8SBOOT_LAB_INDEX", "0")),
        backend=os.environ.get("K8SBOOT_LAB_BACKEND", "vagrant"),
    )
    shape = session_shape()
    try:
        instance.up(shape.control_planes, shape.workers, shape.etcd_hosts, fresh=not keep)
    except BaseException:
        if not keep:
            # Leave nothing behind; the bring-up error is the one to report.
            with contextlib.suppress(LabError):
                instance.destroy()
        raise
    yield instance
    if keep:
        instance._close_ssh_masters()
    else:
        instance.destroy()


@dataclass(frozen=True)
class KubePackages:
    url: str
    versions: tuple[str, ...]


@pytest.fixture(scope="session")
def kube_packages(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubePackages]:
    from tests.lab import debs

    repo = tmp_path_factory.mktemp("apt")
    debs.build_repo(repo, list(LAB_KUBE_VERSIONS))
    address = f"{lab.subnet}.1"
    server = debs.serve(repo, address, REPO_PORT)
    try:
        yield KubePackages(f"http://{address}:{REPO_PORT}/", LAB_KUBE_VERSIONS)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def healthy_lab(lab: Lab) -> Iterator[Lab]:
    lab.ensure_healthy()
    yield lab
    lab.ensure_healthy()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)
