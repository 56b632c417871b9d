"""Kubernetes versions k8sboot supports, and what each one implies; etcd's releases.

A minor is listed here only once its kubeadm, kubelet and kube-proxy config formats were
checked field by field against the upstream API types (tests/unit/apifields).

etcd: distributions lag behind (Debian 12 and Ubuntu 24.04 ship 3.4) while kubeadm runs
etcd 3.5 from an image that has no etcdutl. k8sboot installs etcd's own release (etcd,
etcdctl, etcdutl) under ETCD_INSTALL_DIR, checked against a pinned sha256, and links the
tools into ETCD_BIN_DIR: on control planes of stacked etcd at the version kubeadm's etcd
static pod runs (read from its manifest), so that the tools match the server; on external
etcd hosts at the cluster file's `etcd.version`, server and tools alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

SUPPORTED_MINORS = (30, 31, 32, 33)
DEFAULT_VERSION = "1.33.1"

_VERSION = re.compile(r"^v?1\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class KubeVersion:
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        """Parse '1.33.1' or 'v1.33.1'; raise ValueError naming the supported range."""
        match = _VERSION.match(text.strip())
        if not match:
            raise ValueError(f"'{text}' is not a Kubernetes version like {DEFAULT_VERSION}")
        version = cls(int(match[1]), int(match[2]))
        if version.minor not in SUPPORTED_MINORS:
            raise ValueError(f"Kubernetes {text} is not supported (supported: {supported_range()})")
        return version

    def __str__(self) -> str:
        return f"1.{self.minor}.{self.patch}"

    @property
    def minor_str(self) -> str:
        return f"1.{self.minor}"

    @property
    def kubeadm_api(self) -> str:
        """kubeadm config API: v1beta4 arrived in 1.31; 1.30 only has v1beta3."""
        return "v1beta4" if self.minor >= 31 else "v1beta3"

    @property
    def etcd_version(self) -> str:
        """The etcd kubeadm's newest patch of this minor runs (what external etcd gets
        unless the cluster file says otherwise)."""
        return ETCD_DEFAULT_BY_MINOR[self.minor]

    @property
    def pause_image(self) -> str:
        """The sandbox image this release's kubeadm expects (`kubeadm config images list`)."""
        return "registry.k8s.io/pause:3.9" if self.minor <= 30 else "registry.k8s.io/pause:3.10"


def supported_range() -> str:
    return f"1.{SUPPORTED_MINORS[0]} to 1.{SUPPORTED_MINORS[-1]}"


# --- etcd ---------------------------------------------------------------------------

ETCD_DOWNLOAD_URL = "https://github.com/etcd-io/etcd/releases/download"
ETCD_INSTALL_DIR = PurePosixPath("/opt/k8sboot/etcd")
ETCD_BIN_DIR = PurePosixPath("/usr/local/bin")
ETCDCTL = str(ETCD_BIN_DIR / "etcdctl")
ETCDUTL = str(ETCD_BIN_DIR / "etcdutl")
ETCD = str(ETCD_BIN_DIR / "etcd")

# etcdutl restores with --bump-revision and --mark-compacted from 3.5.10 on (etcd's
# CHANGELOG-3.5.md); a Kubernetes-correct restore needs both.
ETCD_OLDEST = (3, 5, 10)

# The etcd kubeadm's newest patch release of each minor writes into its static pod
# (cmd/kubeadm/app/constants/constants.go, SupportedEtcdVersion, at the newest patch tag).
ETCD_DEFAULT_BY_MINOR = {30: "3.5.15", 31: "3.5.15", 32: "3.5.24", 33: "3.5.24"}

# sha256 of etcd-v<version>-linux-<arch>.tar.gz as etcd-io publishes them (the same values
# kubespray pins in roles/kubespray_defaults/vars/main/checksums.yml, v2.30.0).
ETCD_CHECKSUMS: dict[str, dict[str, str]] = {
    "3.5.12": {
        "amd64": "f2ff0cb43ce119f55a85012255609b61c64263baea83aa7c8e6846c0938adca5",
        "arm64": "31f30c01918771ece28d6e553e0f33be9483ced989896ecf6bbe1edb07786141",
    },
    "3.5.13": {
        "amd64": "31e6fcbee0e8c3df27cf1ba69b522e338377f5ed6447f5d05700aee367f3b7e7",
        "arm64": "2854993bf622764ccdeb7a146fae2965cb0fcba93c5c8f391e0d5f153c8a7a02",
    },
    "3.5.14": {
        "amd64": "b0b34298f53f6830f08e7ddc57fc74dc45563216a66e94d9e6b0b9e0b0281b34",
        "arm64": "90510c79c4aae3c3313691f5770fc53b3ac883338fc0254bf8d22460acd3c19d",
    },
    "3.5.15": {
        "amd64": "3f6b48d8c2844699f2b19c1880508ecf63e1489769ed37ebb97495d5cd848a89",
        "arm64": "5aa28b435edb1f22bf6455f754e16a13e3e4eb1ad8fc7c22ad47aa8e722febf2",
    },
    "3.5.16": {
        "amd64": "b414b27a5ad05f7cb01395c447c85d3227e3fb1c176e51757a283b817f645ccc",
        "arm64": "8e68c55e6d72b791a9e98591c755af36f6f55aa9eca63767822cd8a3817fdb23",
    },
    "3.5.17": {
        "amd64": "eff6ac621d41711085d0f38fab17d8fa3705f6326c3ff11301a1f5a71fc94edd",
        "arm64": "7d717a62520bf39fa1115dfbb1df79479ff74b5eda0914f4132bfa60a48b9549",
    },
    "3.5.18": {
        "amd64": "6ddde039a7a506badf34e7edfb38e1ea90e36f05c8cfceba602045df623d86fa",
        "arm64": "c2bcaf465537d6d47c8bb82a69e31f786f32257050e3bca445bc4e63479ec714",
    },
    "3.5.19": {
        "amd64": "16ae742def5f330800590e8d505d72830a3b0b7012e559e6bd76f0bc9864bf42",
        "arm64": "a786fd2c92c3c0404586ffedf1b318e4944a17aefed1fa6566f5712ddb8359ad",
    },
    "3.5.20": {
        "amd64": "9ac85616fb8c0e45f485074dde0258ca2b7b42f1dd5320821af5a8b66daf7072",
        "arm64": "f034232e6fb64b0d89c45fd78b8b4c3e9fb8d69605dddddcdebf5d7cd96a1531",
    },
    "3.5.21": {
        "amd64": "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c",
        "arm64": "95bf6918623a097c0385b96f139d90248614485e781ec9bee4768dbb6c79c53f",
    },
    "3.5.22": {
        "amd64": "20174ab70a6f3df94da13ecac4610f42c47d25af82426f21c112c2c841ec499a",
        "arm64": "22aca5a253c4a9f2850300b0a1dd209587586ff0e985f5cb1c34e9e5edc07848",
    },
    "3.5.23": {
        "amd64": "8b50d62d38cb2de005b42227dd14b33f6e01758970f248f9257789ecfaf634c9",
        "arm64": "d95118595a9556a29775f99c1ef2ee16f6be113df76b7178643a2bfd6a6f37c3",
    },
    "3.5.24": {
        "amd64": "042497e2ddcee06f22e5d486d81f58affa26b53ee423e2a6aaca3d3ea98c8191",
        "arm64": "efc01f6b3fbef0f000cb53bcad4845c116d7fdd8769ca39d9c40d2fe4d2e509f",
    },
}

ETCD_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

_ETCD_VERSION = re.compile(r"^3\.(\d+)\.(\d+)$")
_IMAGE_TAG = re.compile(r"^\s*image:\s*\S*/etcd:v?(3\.\d+\.\d+)(?:-\d+)?\s*$", re.M)


def parse_etcd_version(text: str) -> tuple[int, int, int] | None:
    found = _ETCD_VERSION.match(text)
    return (3, int(found[1]), int(found[2])) if found else None


def etcd_manifest_version(manifest: str | None) -> str | None:
    """The etcd version of kubeadm's etcd static pod (its image tag, e.g. 3.5.21-0)."""
    found = _IMAGE_TAG.search(manifest or "")
    return found.group(1) if found else None


def etcd_tarball_name(version: str, arch: str) -> str:
    return f"etcd-v{version}-linux-{arch}"


def etcd_tarball_url(base: str, version: str, arch: str) -> str:
    """etcd's GitHub release layout, which mirrors keep: <base>/v<version>/<name>.tar.gz"""
    return f"{base.rstrip('/')}/v{version}/{etcd_tarball_name(version, arch)}.tar.gz"


def etcd_version_dir(version: str) -> PurePosixPath:
    return ETCD_INSTALL_DIR / f"v{version}"


# --- CNI ----------------------------------------------------------------------------

# Calico through the Tigera operator: its release manifest, pinned by version and sha256
# (the bytes of manifests/tigera-operator.yaml at projectcalico/calico tag v3.29.3, as
# raw.githubusercontent.com serves them).
CALICO_VERSION = "v3.29.3"
CALICO_OPERATOR_URL = (
    f"https://raw.githubusercontent.com/projectcalico/calico/{CALICO_VERSION}"
    "/manifests/tigera-operator.yaml"
)
CALICO_OPERATOR_SHA256 = "9a9b610ca61d12e4a9387c94cefa389dfd705e23f6a7be0e12d132ed25a9650d"
