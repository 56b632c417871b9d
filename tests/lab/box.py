"""The lab's machine image: a Debian bookworm root filesystem packed as a local vagrant-lxc box.

Built once with debootstrap from this machine's own Debian mirror, then cached under
CACHE_DIR keyed by a hash of the recipe (package list, customisation script, box files). An
unchanged recipe reuses the cached rootfs and box; a changed one rebuilds both and drops the
caches of older recipes.

    python -m tests.lab box        # build or reuse; prints the box name
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("K8SBOOT_LAB_CACHE", "/var/cache/k8sboot-lab"))
SUITE = "bookworm"
BOX_PREFIX = "k8sboot-lab"

# Vagrant's well-known insecure key pair ships inside Debian's vagrant package.
VAGRANT_KEYS_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"

PACKAGES = (
    # init, logins, SSH
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "libnss-myhostname",
    "openssh-server",
    "openssh-sftp-server",
    "sudo",
    # what Ansible and k8sboot's probes use
    "python3",
    "python3-apt",
    "procps",
    "kmod",
    "ca-certificates",
    "curl",
    "gnupg",
    "xz-utils",
    "netbase",
    "iproute2",
    "iputils-ping",
    # what kubeadm's preflight and kube-proxy expect on a node
    "iptables",
    "ebtables",
    "conntrack",
    "socat",
    "ethtool",
    # container runtime (disabled: tests and k8sboot start it)
    "containerd",
    "runc",
    # etcd: bookworm's etcdctl 3.4 as a Debian 12 host has it (no etcdutl); the etcd server
    # the stand-in kubelet runs for kubeadm's static pod is trixie's 3.5 (_install_etcd)
    "etcd-client",
    "adduser",  # trixie's etcd-server needs it
    "age",  # encrypts the scheduled etcd snapshots (`k8sboot etcd schedule` with a backup key)
    # what the Kubernetes stand-ins (tests/lab/standins) run on
    "python3-yaml",
    "python3-cryptography",
    "python3-cffi-backend",  # debootstrap does not resolve the virtual packages it provides
)

# Runs on the host after debootstrap, with the rootfs as $1 and the public key file as $2.
CUSTOMIZE = r"""
set -euo pipefail
R=$1; PUBKEY=$2
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C "$@"; }

# The vagrant user: passwordless sudo, Vagrant's insecure key (Vagrant swaps in a
# per-machine key on first `vagrant up`).
in_root useradd --create-home --shell /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$R/etc/sudoers.d/vagrant"
chmod 0440 "$R/etc/sudoers.d/vagrant"
in_root visudo -cq
uid=$(in_root id -u vagrant); gid=$(in_root id -g vagrant)
install -d -m 0700 -o "$uid" -g "$gid" "$R/home/vagrant/.ssh"
install -m 0600 -o "$uid" -g "$gid" "$PUBKEY" "$R/home/vagrant/.ssh/authorized_keys"

# Every machine gets its own SSH host keys, made at first boot.
rm -f "$R"/etc/ssh/ssh_host_*
cat > "$R/etc/systemd/system/ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this machine's SSH host keys
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
RequiredBy=ssh.service
EOF
in_root systemctl enable ssh-hostkeys.service ssh.service >/dev/null 2>&1
printf 'UseDNS no\nPrintMotd no\n' > "$R/etc/ssh/sshd_config.d/k8sboot-lab.conf"
rm -rf "$R/etc/update-motd.d" "$R/etc/motd"

# Identity comes from the machine: hostname from the container, machine-id at first boot.
rm -f "$R/etc/hostname" "$R/var/lib/dbus/machine-id"
: > "$R/etc/machine-id"
ln -s /etc/machine-id "$R/var/lib/dbus/machine-id"
rm -f "$R/etc/resolv.conf"; : > "$R/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
: > "$R/etc/fstab"

# Services the tests and k8sboot configure and start themselves.
in_root systemctl disable etcd.service containerd.service >/dev/null 2>&1
# Timers and jobs that only cost time and disk in short-lived machines.
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer dpkg-db-backup.timer >/dev/null 2>&1
# Keep the journal in memory and small: 20 machines share one disk.
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' \
    > "$R/etc/systemd/journald.conf.d/k8sboot-lab.conf"

# No package sources: lab machines have no internet; k8sboot adds its own sources.
rm -f "$R/etc/apt/sources.list"; rm -rf "$R"/etc/apt/sources.list.d/*
# Lean: every LXC machine unpacks its own copy. Keep it lean for packages added later too.
cat > "$R/etc/dpkg/dpkg.cfg.d/k8sboot-lab-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
find "$R/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/locale/* \
    "$R"/usr/share/lintian "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin \
    "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old \
    "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/tmp/* "$R"/var/tmp/* "$R"/root/.bash_history
"""

# Box files. The lxc-config is included at container creation; everything per machine
# (network, privileges for containerd) lives in the Vagrantfile's lxc provider block.
LXC_CONFIG = "lxc.include = /usr/share/lxc/config/common.conf\nlxc.arch = x86_64\n"
METADATA = {"provider": "lxc", "version": "1.0.0"}

# Bump when the way the box is packed changes without the recipe text changing.
FORMAT = 1


class BoxError(RuntimeError):
    pass


def _etcd_debs() -> dict[str, Path]:
    from tests.lab import etcd_release  # it reads this module's CACHE_DIR and mirror

    return etcd_release.debs()


def recipe_hash() -> str:
    recipe = {
        "format": FORMAT,
        "suite": SUITE,
        "packages": sorted(PACKAGES),
        "etcd": _etcd_debs()["etcd-server"].name,
        "customize": CUSTOMIZE,
        "lxc_config": LXC_CONFIG,
        "metadata": METADATA,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Box:
    """One cached build: the unpacked rootfs (for the light backend) and the Vagrant box."""

    hash: str
    rootfs: Path
    box_file: Path
    name: str
    vagrant_home: Path
    build_seconds: float | None  # None when everything came from the cache

    @property
    def cached(self) -> bool:
        return self.build_seconds is None


def last_build(hash_: str | None = None) -> dict | None:
    """Timings of the build that made the cached box: {"seconds": s, "phases": {...}}."""
    try:
        return json.loads((CACHE_DIR / f"build-{hash_ or recipe_hash()}.json").read_text())
    except (OSError, ValueError):
        return None


def vagrant_home() -> Path:
    return CACHE_DIR / "vagrant-home"


def box_name(hash_: str | None = None) -> str:
    return f"{BOX_PREFIX}-{hash_ or recipe_hash()}"


def vagrant_env(home: Path | None = None) -> dict[str, str]:
    """Environment for running vagrant against the lab's private VAGRANT_HOME."""
    env = dict(os.environ)
    env["VAGRANT_HOME"] = str(home or vagrant_home())
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"
    env["VAGRANT_NO_COLOR"] = "1"
    return env


def debian_mirror() -> str:
    """This machine's own Debian mirror (lab machines are built from the same archive)."""
    if mirror := os.environ.get("K8SBOOT_LAB_MIRROR"):
        return mirror
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in sources.read_text().split("\n\n"):
            suite = re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M)
            uri = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            if suite and uri and "security" not in stanza:
                return uri.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(rf"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
            if m:
                return m.group(1)
    raise BoxError("no Debian mirror found in /etc/apt sources; set K8SBOOT_LAB_MIRROR")


def _vagrant_pubkey() -> Path:
    found = sorted(Path("/").glob(VAGRANT_KEYS_GLOB.lstrip("/")))
    if not found:
        raise BoxError(f"Vagrant's insecure public key not found ({VAGRANT_KEYS_GLOB})")
    return found[-1]


@contextmanager
def _cache_lock() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise BoxError(f"{cmd[0]} failed (exit {proc.returncode}); log {log}:\n{tail}")


def _build_rootfs(target: Path, log: Path, phases: dict[str, float]) -> None:
    """debootstrap + customise into target/rootfs (atomically: built beside, then renamed)."""
    work = target.with_name(target.name + ".partial")
    if work.exists():
        _remove_tree(work)
    rootfs = work / "rootfs"
    rootfs.parent.mkdir(parents=True)
    t0 = time.monotonic()
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            debian_mirror(),
        ],
        log,
    )
    phases["debootstrap"] = time.monotonic() - t0
    t0 = time.monotonic()
    _install_etcd(rootfs, log)
    phases["etcd"] = time.monotonic() - t0
    t0 = time.monotonic()
    script = work / "customize.sh"
    script.write_text(CUSTOMIZE)
    _run(["bash", str(script), str(rootfs), str(_vagrant_pubkey())], log)
    script.unlink()
    phases["customize"] = time.monotonic() - t0
    work.rename(target)


def _install_etcd(rootfs: Path, log: Path) -> None:
    """Debian 13's etcd-server 3.5: the stand-in kubelet runs its etcd for kubeadm's etcd
    static pod (upstream runs it from the etcd image, not from the host). Its etcdutl goes:
    neither a Debian 12 host nor kubeadm's etcd image has one, so only what k8sboot installs
    may provide it. Its service is disabled by CUSTOMIZE."""
    from tests.lab import etcd_release

    inside = []
    server = etcd_release.debs()["etcd-server"]
    for path in (server,):
        shutil.copy(path, rootfs / "tmp" / path.name)
        inside.append(f"/tmp/{path.name}")
    # policy-rc.d: the package must not start etcd inside the chroot.
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        _run(["chroot", str(rootfs), "dpkg", "-i", *inside], log)
        (rootfs / "usr/bin/etcdutl").unlink()
    finally:
        policy.unlink()
        for name in inside:
            (rootfs / name.lstrip("/")).unlink(missing_ok=True)


def _pack_box(rootfs_dir: Path, box_file: Path, log: Path) -> None:
    work = box_file.with_name(box_file.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    compressor = "pigz" if shutil.which("pigz") else "gzip"
    # vagrant-lxc's template unpacks with `tar xz --strip-components=2`: ./rootfs/<files>.
    _run(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "-I",
            compressor,
            "-cf",
            str(work / "rootfs.tar.gz"),
            "-C",
            str(rootfs_dir),
            "./rootfs",
        ],
        log,
    )
    (work / "lxc-config").write_text(LXC_CONFIG)
    (work / "metadata.json").write_text(json.dumps(METADATA) + "\n")
    tmp_box = box_file.with_name(box_file.name + ".tmp")
    # The outer tar is not compressed: its big member is already gzip.
    with tarfile.open(tmp_box, "w") as tar:
        for member in ("metadata.json", "lxc-config", "rootfs.tar.gz"):
            tar.add(work / member, arcname=member)
    tmp_box.rename(box_file)
    shutil.rmtree(work)


def _remove_tree(path: Path) -> None:
    # A debootstrap killed midway can leave /proc or /sys mounted inside its target.
    for mount in _mounts_under(path):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(path, ignore_errors=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            mounts.append(point)
    return sorted(mounts, reverse=True)


def _vagrant_boxes(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        ["vagrant", "box", "list", "--machine-readable"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(",")
        if len(parts) >= 4 and parts[2] == "box-name":
            names.append(parts[3])
    return names


def _prune_other_recipes(keep: str, env: dict[str, str], log: Path) -> None:
    for path in CACHE_DIR.iterdir():
        m = re.fullmatch(
            r"(rootfs|box|build)-([0-9a-f]{12})(\.box|\.log|\.json)?(\.partial|\.tmp)?", path.name
        )
        if m and m.group(2) != keep:
            if path.is_dir():
                _remove_tree(path)
            else:
                path.unlink(missing_ok=True)
    for name in _vagrant_boxes(env):
        if name.startswith(BOX_PREFIX + "-") and name != box_name(keep):
            with open(log, "a") as out:
                subprocess.run(
                    ["vagrant", "box", "remove", "--force", "--all", name],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )


def ensure_box(*, rebuild: bool = False) -> Box:
    """Build what is missing for the current recipe and return the cached box.

    Safe to call from several processes: builds are serialised by a lock in CACHE_DIR.
    """
    for tool in ("debootstrap", "vagrant", "tar", "chroot"):
        if shutil.which(tool) is None:
            raise BoxError(f"{tool} not found (run .ci/lab-deps)")
    h = recipe_hash()
    rootfs_dir = CACHE_DIR / f"rootfs-{h}"
    box_file = CACHE_DIR / f"box-{h}.box"
    name = box_name(h)
    home = vagrant_home()
    env = vagrant_env(home)
    with _cache_lock():
        log = CACHE_DIR / f"build-{h}.log"
        record = CACHE_DIR / f"build-{h}.json"
        phases: dict[str, float] = {}
        started = time.monotonic()
        if rebuild:
            _remove_tree(rootfs_dir)
            box_file.unlink(missing_ok=True)
            subprocess.run(
                ["vagrant", "box", "remove", "--force", "--all", name],
                env=env,
                capture_output=True,
                check=False,
            )
        if not (rootfs_dir / "rootfs" / "bin" / "true").exists():
            log.write_text("")
            _build_rootfs(rootfs_dir, log, phases)
            box_file.unlink(missing_ok=True)
        if not box_file.exists():
            t0 = time.monotonic()
            _pack_box(rootfs_dir, box_file, log)
            phases["pack"] = time.monotonic() - t0
        if phases or name not in _vagrant_boxes(env):
            t0 = time.monotonic()
            subprocess.run(
                ["vagrant", "box", "remove", "--force", "--all", name],
                env=env,
                capture_output=True,
                check=False,
            )
            _run(["vagrant", "box", "add", "--name", name, str(box_file)], log, env=env)
            phases["box_add"] = time.monotonic() - t0
        seconds = None
        if phases:
            seconds = time.monotonic() - started
            _prune_other_recipes(h, env, log)
            recorded = dict(phases)
            if "debootstrap" not in phases and (previous := last_build(h)):
                # Only packed or re-added: keep the full build's figures, update the rest.
                recorded = {**previous.get("phases", {}), **phases}
            record.write_text(
                json.dumps({"seconds": sum(recorded.values()), "phases": recorded}, indent=1) + "\n"
            )
    return Box(h, rootfs_dir / "rootfs", box_file, name, home, seconds)
