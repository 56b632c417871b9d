"""etcd 3.5 for the lab, from Debian 13 (trixie)'s packages.

No registry reachable here serves etcd's release tarballs (GitHub) or kubeadm's etcd image,
but Debian's archive serves trixie's etcd 3.5. The lab takes its binaries from there:

- `debs()`: trixie's etcd-server (etcd, etcdutl) and etcd-client (etcdctl), downloaded once
  from this machine's Debian mirror and checked against trixie's signed index;
- the box installs etcd-server, so the stand-in kubelet runs etcd 3.5 for kubeadm's etcd
  static pod (see box.py);
- `publish(repo)`: a release tarball shaped like upstream's (`etcd-vX-linux-amd64/` with
  etcd, etcdctl, etcdutl), built byte for byte the same from the same packages, placed where a
  mirror of etcd's GitHub release downloads has it (`etcd/vX/etcd-vX-linux-amd64.tar.gz`);
- `cluster_settings(url)`: the cluster file's `etcd` settings that point k8sboot at it.

Only the checksum differs from upstream's tarball of that version, so lab cluster files
give it (`etcd.download.sha256`), as a site with its own build would.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import re
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from k8sboot.versions import etcd_tarball_name, etcd_tarball_url
from tests.lab.box import CACHE_DIR, debian_mirror

SUITE = "trixie"
PACKAGES = {"etcd-server": ("etcd", "etcdutl"), "etcd-client": ("etcdctl",)}
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ARCH = "amd64"


class EtcdReleaseError(RuntimeError):
    pass


@dataclass(frozen=True)
class Release:
    version: str  # e.g. 3.5.16
    tarball: bytes

    @property
    def path(self) -> str:
        """Where k8sboot looks for it below the download URL (etcd's GitHub layout)."""
        return etcd_tarball_url("", self.version, ARCH).lstrip("/")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tarball).hexdigest()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return answer.read()


def _signed_packages_index(mirror: str) -> str:
    """trixie's main/binary-amd64 Packages, checked against its gpgv-verified InRelease."""
    base = f"{mirror.rstrip('/')}/dists/{SUITE}"
    with tempfile.TemporaryDirectory() as tmp:
        signed = Path(tmp) / "InRelease"
        signed.write_bytes(_fetch(f"{base}/InRelease"))
        verified = subprocess.run(
            ["gpgv", "--keyring", KEYRING, "--output", "-", str(signed)],
            capture_output=True,
            check=False,
        )
    if verified.returncode != 0:
        raise EtcdReleaseError(f"{base}/InRelease: bad signature: {verified.stderr.decode()}")
    name = f"main/binary-{ARCH}/Packages.xz"
    listed = re.search(
        rf"^ ([0-9a-f]{{64}})\s+\d+\s+{re.escape(name)}$", verified.stdout.decode(), re.M
    )
    if not listed:
        raise EtcdReleaseError(f"{name} is not listed in {base}/InRelease")
    packed = _fetch(f"{base}/{name}")
    if hashlib.sha256(packed).hexdigest() != listed.group(1):
        raise EtcdReleaseError(f"{base}/{name}: checksum differs from InRelease")
    return lzma.decompress(packed).decode()


def _stanza(index: str, package: str) -> dict[str, str]:
    for block in index.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", block, re.M))
        if fields.get("Package") == package:
            return fields
    raise EtcdReleaseError(f"{package} is not in {SUITE}")


def debs() -> dict[str, Path]:
    """The .deb of each package, from the cache or the mirror (checked either way)."""
    cache_dir = CACHE_DIR / "etcd-debs"
    cache_dir.mkdir(parents=True, exist_ok=True)
    stamp = cache_dir / "index"
    found: dict[str, Path] = {}
    if stamp.exists():  # name<TAB>sha256<TAB>file, written after a checked download
        for line in stamp.read_text().splitlines():
            package, digest, file = line.split("\t")
            path = cache_dir / file
            if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                found[package] = path
    if set(found) == set(PACKAGES):
        return found
    mirror = debian_mirror()
    index = _signed_packages_index(mirror)
    lines = []
    for package in PACKAGES:
        fields = _stanza(index, package)
        data = _fetch(f"{mirror.rstrip('/')}/{fields['Filename']}")
        if hashlib.sha256(data).hexdigest() != fields["SHA256"]:
            raise EtcdReleaseError(f"{fields['Filename']}: checksum differs from the index")
        path = cache_dir / Path(fields["Filename"]).name
        path.write_bytes(data)
        found[package] = path
        lines.append(f"{package}\t{fields['SHA256']}\t{path.name}")
    stamp.write_text("\n".join(lines) + "\n")
    return found


def _deterministic_tar(name: str, files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        directory = tarfile.TarInfo(name)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for file, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{name}/{file}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


@cache
def release() -> Release:
    """The lab's etcd release tarball (the same bytes for the same packages), cached beside
    the packages it is made of."""
    packages = debs()
    key = hashlib.sha256("".join(sorted(p.name for p in packages.values())).encode()).hexdigest()
    cached = CACHE_DIR / "etcd-debs" / f"release-{key[:12]}"
    if (cached / "version").exists() and (cached / "tarball").exists():
        return Release((cached / "version").read_text().strip(), (cached / "tarball").read_bytes())
    binaries: dict[str, bytes] = {}
    version = ""
    with tempfile.TemporaryDirectory() as tmp:
        for package, path in packages.items():
            root = Path(tmp) / package
            subprocess.run(["dpkg-deb", "-x", str(path), str(root)], check=True)
            for binary in PACKAGES[package]:
                binaries[binary] = (root / "usr/bin" / binary).read_bytes()
            if package == "etcd-server":
                shown = subprocess.run(
                    [str(root / "usr/bin/etcd"), "--version"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                found = re.search(r"etcd Version: (\d+\.\d+\.\d+)", shown)
                if not found:
                    raise EtcdReleaseError(f"no version in `etcd --version`: {shown!r}")
                version = found.group(1)
    built = Release(version, _deterministic_tar(etcd_tarball_name(version, ARCH), binaries))
    cached.mkdir(parents=True, exist_ok=True)
    (cached / "tarball").write_bytes(built.tarball)
    (cached / "version").write_text(version + "\n")
    return built


def publish(repo_dir: Path) -> Release:
    """Put the tarball under `repo_dir/etcd/`, as a mirror of etcd's release downloads."""
    found = release()
    target = repo_dir / "etcd" / found.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(found.tarball)
    return found


def cluster_settings(repo_url: str) -> dict[str, object]:
    """The `etcd` section's download settings for a cluster file of the lab."""
    found = release()
    return {
        "version": found.version,
        "download": {"url": f"{repo_url.rstrip('/')}/etcd", "sha256": {ARCH: found.sha256}},
    }
