# Runs ON a host (python3 -, stdlib only): installs one etcd release and links its binaries.
# k8sboot prepends `ARGS = {...}`: url, sha256, dir (the version's own directory), bin_dir,
# binaries (which to link), server and data_dir (create the etcd user and its data
# directory too).
# Prints one JSON document: {"downloaded": bool, "linked": [...]}.
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

ARGS = globals().get("ARGS", {})
RELEASE_BINARIES = ("etcd", "etcdctl", "etcdutl")


def complete(directory):
    return all(os.access(os.path.join(directory, b), os.X_OK) for b in RELEASE_BINARIES)


def download(url, sha256, path):
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=300) as answer, open(path, "wb") as out:
        for chunk in iter(lambda: answer.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        sys.exit(f"{url}: sha256 is {digest.hexdigest()}, expected {sha256}: not installed")


def unpack(path, directory):
    """Only the three binaries, whatever else the tarball holds or claims (no links, no
    paths outside)."""
    os.makedirs(directory)
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            name = member.name.rstrip("/").split("/")[-1]
            if member.isfile() and name in RELEASE_BINARIES and member.name.count("/") == 1:
                source = tar.extractfile(member)
                target = os.path.join(directory, name)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, 0o755)
    missing = [b for b in RELEASE_BINARIES if not os.path.exists(os.path.join(directory, b))]
    if missing:
        sys.exit(f"{ARGS['url']}: no {', '.join(missing)} in the tarball")


def link(target, link_path):
    """Point link_path at target, replacing what was there in one rename."""
    if os.path.islink(link_path) and os.readlink(link_path) == target:
        return False
    temporary = link_path + ".k8sboot-tmp"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, link_path)
    return True


def etcd_user(data_dir):
    if subprocess.run(["getent", "passwd", "etcd"], capture_output=True).returncode != 0:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                data_dir,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "etcd",
            ],
            check=True,
        )
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    shutil.chown(data_dir, "etcd", "etcd")
    os.chmod(data_dir, 0o700)


directory = ARGS["dir"]
downloaded = False
if not complete(directory):
    parent = os.path.dirname(directory)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    work = tempfile.mkdtemp(dir=parent, prefix=".download-")
    try:
        tarball = os.path.join(work, "etcd.tar.gz")
        download(ARGS["url"], ARGS["sha256"], tarball)
        unpack(tarball, os.path.join(work, "unpacked"))
        if os.path.exists(directory):  # a partial directory from an interrupted run
            shutil.rmtree(directory)
        os.rename(os.path.join(work, "unpacked"), directory)
        downloaded = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
linked = [
    b
    for b in ARGS["binaries"]
    if link(os.path.join(directory, b), os.path.join(ARGS["bin_dir"], b))
]
if ARGS.get("server"):
    etcd_user(ARGS["data_dir"])
print(json.dumps({"downloaded": downloaded, "linked": linked}))
