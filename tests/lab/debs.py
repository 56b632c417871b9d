"""Debian packages kubeadm, kubelet, kubectl, cri-tools and kubernetes-cni carrying the
Kubernetes stand-ins (tests/lab/standins), and a flat apt repository serving them the way
pkgs.k8s.io does (`deb <url> /`: Packages, Packages.gz and Release at the root).

    python -m tests.lab.debs build --version 1.33.1 --out /var/cache/k8sboot-lab/apt
    python -m tests.lab.debs serve /var/cache/k8sboot-lab/apt --bind 10.213.0.1 --port 8090

Lab machines then use `deb [trusted=yes] http://10.213.0.1:8090/ /`, or one minor's
repository in pkgs.k8s.io's layout, `deb [trusted=yes] http://10.213.0.1:8090/core:/stable:/v1.33/deb/ /`.
Needs dpkg-dev and apt-utils on the building machine. Package versions follow upstream's
revision style: `1.33.1-1.1`.
"""

from __future__ import annotations

# ruff: noqa: E501 (systemd unit lines below are long by nature)
import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.lab import calico, etcd_release

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
APIFIELDS = HERE.parent / "unit" / "apifields"
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
LIB = "/usr/lib/k8sboot-standins"
MAINTAINER = "k8sboot lab <lab@k8sboot.invalid>"
STANDIN_DEPENDS = "python3 (>= 3.11), python3-yaml, python3-cryptography"
REVISION = "1.1"

KUBELET_UNIT = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

KUBEADM_DROPIN = """\
# kubeadm's drop-in for the kubelet unit (shipped by the kubeadm package, as upstream does).
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# Written by "kubeadm init" and "kubeadm join": KUBELET_KUBEADM_ARGS.
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# The operator's last-resort overrides: KUBELET_EXTRA_ARGS.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

KUBELET_POSTINST = """\
#!/bin/sh
set -e
# Enabled and started at install like upstream's package: it restarts every 10 s until
# kubeadm has written /var/lib/kubelet/config.yaml. An upgrade ($2 = the version replaced)
# only reloads units, as upstream's kubelet.spec (%systemd_postun, not _with_restart): the
# running kubelet stays the old one until the operator restarts it.
if [ "$1" = "configure" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ -z "$2" ]; then
        systemctl enable kubelet.service >/dev/null 2>&1 || true
        systemctl restart kubelet.service >/dev/null 2>&1 || true
    fi
fi
exit 0
"""

KUBELET_PRERM = """\
#!/bin/sh
set -e
if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
    systemctl stop kubelet.service >/dev/null 2>&1 || true
    systemctl disable kubelet.service >/dev/null 2>&1 || true
fi
exit 0
"""

RELOAD_POSTINST = """\
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
"""

CRICTL = """\
#!/bin/sh
# crictl stand-in (k8sboot lab): the lab runs no CRI pod sandboxes, so only the version is known.
case "$1" in
  --version|-v) echo "crictl version v{version}" ;;
  version) echo "Version:  0.1.0"; echo "RuntimeName:  containerd"; echo "RuntimeApiVersion:  v1" ;;
  *) echo "crictl stand-in: '$*' is not available in the k8sboot lab" >&2; exit 1 ;;
esac
"""


def launcher(component: str, module: str) -> str:
    return (
        f"#!/usr/bin/python3\n# {component} stand-in for the k8sboot lab (see the package's "
        f'description)\nimport sys\n\nsys.path.insert(0, "{LIB}/{component}")\n'
        f"from standins.{module} import main  # noqa: E402\n\nsys.exit(main())\n"
    )


def split_version(version: str) -> tuple[str, int]:
    v = version.lstrip("v")
    parts = v.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a Kubernetes version: {version!r}")
    minor = int(parts[1])
    if not 30 <= minor <= 33:
        raise ValueError(f"Kubernetes {v}: the stand-ins cover 1.30 to 1.33")
    return v, minor


def find_kubectl(minor: int) -> Path:
    exact = KUBECTL_DIR / f"kubectl.1.{minor}"
    if exact.exists():
        return exact
    on_path = shutil.which("kubectl")
    if on_path:
        return Path(on_path).resolve()
    raise FileNotFoundError(f"no kubectl for 1.{minor}: neither {exact} nor `kubectl` on PATH")


def _copy_library(dest: Path, version: str) -> None:
    shutil.copytree(
        STANDINS,
        dest / "standins",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_build.json"),
    )
    (dest / "standins" / "_build.json").write_text(json.dumps({"kubernetesVersion": f"v{version}"}))
    shutil.copytree(
        APIFIELDS, dest / "standins" / "apifields", ignore=shutil.ignore_patterns("*.md")
    )


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    path.chmod(mode)


def _control(
    root: Path,
    fields: dict[str, str],
    scripts: dict[str, str] | None = None,
    conffiles: list[str] | None = None,
) -> None:
    debian = root / "DEBIAN"
    debian.mkdir(parents=True, exist_ok=True)
    size_kb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) // 1024 + 1
    fields = {**fields, "Installed-Size": str(size_kb)}
    order = [
        "Package",
        "Version",
        "Architecture",
        "Maintainer",
        "Installed-Size",
        "Depends",
        "Recommends",
        "Suggests",
        "Section",
        "Priority",
        "Homepage",
        "Description",
    ]
    lines = [f"{k}: {fields[k]}" for k in order if fields.get(k)]
    _write(debian / "control", "\n".join(lines) + "\n")
    for name, body in (scripts or {}).items():
        _write(debian / name, body, 0o755)
    if conffiles:
        _write(debian / "conffiles", "\n".join(conffiles) + "\n")


def _build_deb(root: Path, out_dir: Path, name: str, version: str) -> Path:
    out = out_dir / f"{name}_{version}_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def build_packages(version: str, out_dir: Path, kubectl: Path | None = None) -> list[Path]:
    """The five packages for one Kubernetes version, written into out_dir."""
    v, minor = split_version(version)
    deb_version = f"{v}-{REVISION}"
    cri_version = f"1.{minor}.0-{REVISION}"
    cni_version = f"{'1.4.0' if minor == 30 else '1.6.0'}-{REVISION}"
    out_dir.mkdir(parents=True, exist_ok=True)
    kubectl = kubectl or find_kubectl(minor)
    built = []
    common = {
        "Architecture": "amd64",
        "Maintainer": MAINTAINER,
        "Priority": "optional",
        "Homepage": "https://kubernetes.io",
    }
    with tempfile.TemporaryDirectory(prefix="k8sboot-debs-") as tmp:
        t = Path(tmp)

        root = t / "kubeadm"
        _copy_library(root / LIB.lstrip("/") / "kubeadm", v)
        _write(root / "usr/bin/kubeadm", launcher("kubeadm", "kubeadm.cli"), 0o755)
        _write(root / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN)
        deps = STANDIN_DEPENDS + (f", cri-tools (>= 1.{minor}.0)" if minor < 32 else "")
        _control(
            root,
            {
                **common,
                "Package": "kubeadm",
                "Version": deb_version,
                "Depends": deps,
                "Section": "admin",
                "Description": "Command-line utility for administering a Kubernetes "
                "cluster\n k8sboot lab stand-in: not upstream kubeadm; see "
                "tests/lab/README.md in k8sboot.",
            },
            {"postinst": RELOAD_POSTINST},
        )
        built.append(_build_deb(root, out_dir, "kubeadm", deb_version))

        root = t / "kubelet"
        _copy_library(root / LIB.lstrip("/") / "kubelet", v)
        _write(root / "usr/bin/kubelet", launcher("kubelet", "kubelet.main"), 0o755)
        _write(root / "usr/lib/systemd/system/kubelet.service", KUBELET_UNIT)
        _write(root / "etc/default/kubelet", "KUBELET_EXTRA_ARGS=\n")
        # Empty directories, as upstream's kubelet package ships them.
        (root / "var/lib/kubelet").mkdir(parents=True, exist_ok=True)
        (root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
        _control(
            root,
            {
                **common,
                "Package": "kubelet",
                "Version": deb_version,
                "Depends": f"kubernetes-cni (>= 1.2.0), mount, util-linux, {STANDIN_DEPENDS}",
                "Recommends": "iptables (>= 1.8.4)",
                "Suggests": "etcd-server, containerd",
                "Section": "net",
                "Description": "Node agent for Kubernetes clusters\n k8sboot lab stand-in: "
                "runs static pods as processes (the real etcd, stand-ins "
                "for the control plane); see tests/lab/README.md in k8sboot.",
            },
            {"postinst": KUBELET_POSTINST, "prerm": KUBELET_PRERM},
            ["/etc/default/kubelet"],
        )
        built.append(_build_deb(root, out_dir, "kubelet", deb_version))

        root = t / "kubectl"
        _write(root / "usr/bin/kubectl", kubectl.read_bytes(), 0o755)
        _control(
            root,
            {
                **common,
                "Package": "kubectl",
                "Version": deb_version,
                "Section": "admin",
                "Description": "Command-line utility for interacting with a Kubernetes "
                f"cluster\n The real kubectl ({kubectl.name}), repackaged "
                "for the k8sboot lab.",
            },
        )
        built.append(_build_deb(root, out_dir, "kubectl", deb_version))

        root = t / "cri-tools"
        _write(root / "usr/bin/crictl", CRICTL.format(version=cri_version.split("-")[0]), 0o755)
        _control(
            root,
            {
                **common,
                "Package": "cri-tools",
                "Version": cri_version,
                "Section": "admin",
                "Description": "Command-line utility for interacting with a container "
                "runtime\n k8sboot lab stand-in: reports its version only.",
            },
        )
        built.append(_build_deb(root, out_dir, "cri-tools", cri_version))

        root = t / "kubernetes-cni"
        _write(root / "opt/cni/bin/.kubernetes-cni-keep", "")
        _control(
            root,
            {
                **common,
                "Package": "kubernetes-cni",
                "Version": cni_version,
                "Section": "net",
                "Description": "Binaries required to provision kubernetes container "
                "networking\n k8sboot lab stand-in: creates /opt/cni/bin "
                "only; the lab runs no pod sandboxes.",
            },
        )
        built.append(_build_deb(root, out_dir, "kubernetes-cni", cni_version))
    return built


def minor_repository(repo_dir: Path, minor: int) -> Path:
    """Where pkgs.k8s.io keeps one minor's packages, `core:/stable:/v1.<minor>/deb/`: a flat
    repository of its own (`deb <url>/core:/stable:/v1.32/deb/ /`) holding only that minor's
    kubeadm, kubelet, kubectl, cri-tools and kubernetes-cni."""
    return repo_dir / "core:" / "stable:" / f"v1.{minor}" / "deb"


def build_repo(repo_dir: Path, versions: list[str], kubectl: Path | None = None) -> Path:
    """Packages for every version in one flat repository (Packages, Packages.gz, Release),
    the same packages per minor in pkgs.k8s.io's layout (`minor_repository`, hard links),
    and beside them, under etcd/, the lab's etcd release as a mirror of etcd's downloads
    (see etcd_release.py), and under calico/ the stand-in for the Tigera operator's
    release manifest (calico.py)."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    by_minor: dict[int, list[Path]] = {}
    for v in versions:
        by_minor.setdefault(split_version(v)[1], []).extend(build_packages(v, repo_dir, kubectl))
    index_repo(repo_dir)
    for minor, built in by_minor.items():
        directory = minor_repository(repo_dir, minor)
        directory.mkdir(parents=True, exist_ok=True)
        for deb in built:
            (directory / deb.name).unlink(missing_ok=True)
            (directory / deb.name).hardlink_to(deb)
        index_repo(directory)
    etcd_release.publish(repo_dir)
    calico.publish(repo_dir)
    return repo_dir


def index_repo(repo_dir: Path) -> None:
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."], cwd=repo_dir, check=True, capture_output=True
    ).stdout
    (repo_dir / "Packages").write_bytes(packages)
    with gzip.open(repo_dir / "Packages.gz", "wb") as f:
        f.write(packages)
    release = subprocess.run(
        [
            "apt-ftparchive",
            "-o",
            "APT::FTPArchive::Release::Origin=k8sboot-lab",
            "-o",
            "APT::FTPArchive::Release::Label=k8sboot-lab",
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "release",
            ".",
        ],
        cwd=repo_dir,
        check=True,
        capture_output=True,
    ).stdout
    (repo_dir / "Release").write_bytes(release)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(repo_dir: Path, bind: str, port: int) -> ThreadingHTTPServer:
    """Serve the repository over HTTP in a background thread; call .shutdown() to stop."""
    server = ThreadingHTTPServer((bind, port), partial(_QuietHandler, directory=str(repo_dir)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.debs")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build packages and index the repository")
    b.add_argument(
        "--version",
        action="append",
        required=True,
        help="Kubernetes version, e.g. 1.33.1 (repeatable)",
    )
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--kubectl", type=Path)
    s = sub.add_parser("serve", help="serve a repository directory over HTTP")
    s.add_argument("dir", type=Path)
    s.add_argument("--bind", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8090)
    a = p.parse_args(argv)
    if a.cmd == "build":
        build_repo(a.out, a.version, a.kubectl)
        for f in sorted(a.out.glob("*.deb")):
            print(f)
        return 0
    server = serve(a.dir, a.bind, a.port)
    print(
        f"serving {a.dir} at http://{a.bind}:{a.port}/ (deb [trusted=yes] "
        f"http://{a.bind}:{a.port}/ /)",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
