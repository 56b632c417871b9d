"""`etcd verify`'s test restore (k8sboot/etcd/verify.py) run for real on this
machine: a backup of a real etcd (Debian's 3.4, the `etcd` fixture) restored by etcdctl
into a throw-away etcd started through systemd-run (tests/standins/fake_systemd_run.py),
and read back with etcdctl. The lab runs the same with etcd 3.5 (tests/e2e/test_etcd.py).

The throw-away etcd holds every Secret of the cluster, without TLS or authentication: no
process but k8sboot's own may reach it while it runs. etcd v3.4.23 and v3.5.16 (etcd-io/etcd:
embed/etcd.go, server/embed/etcd.go configureClientListeners and configurePeerListeners,
client/pkg/transport/unix_listener.go) serve a unix:// URL on a socket at the URL's host
(and, for clients, path), relative to etcd's working directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import BinaryIO

import pytest

from k8sboot.etcd import backup as etcd_backup
from k8sboot.etcd import topology
from k8sboot.etcd import verify as etcd_verify
from k8sboot.etcd.backup import SaveSnapshot
from k8sboot.etcd.catalogue import LocalStore, Manifest, now
from k8sboot.etcd.client import NO_TLS, EtcdCtl
from k8sboot.executor import Executor
from k8sboot.spec import spec_from_text
from k8sboot.transport import CommandFailed, CommandResult
from k8sboot.versions import ETCD_BIN_DIR
from tests.lab.standins.etcd import Etcd

from .conftest import REQUIRED
from .fake_systemctl import alive
from .harness import etcd_server

FAKE_SYSTEMD = Path(__file__).resolve().parent / "fake_systemd_run.py"
CLUSTER = """\
apiVersion: k8sboot/v1alpha1
kind: Cluster
name: lab
hosts:
  - {name: cp1, address: 10.0.0.11, roles: [control-plane]}
"""


class LocalHost:
    """This machine as the host k8sboot reaches over SSH: commands run as root under bash,
    from a home directory of their own, with etcd's tools where k8sboot installs them
    (ETCD_BIN_DIR) taken from `bin_dir`, and systemd-run and systemctl faked. `started`
    is called with the unit's name once systemd-run has started a service."""

    name = "cp1"

    def __init__(self, bin_dir: Path, home: Path, started) -> None:
        self.bin_dir, self.home, self.started = bin_dir, home, started

    def run(
        self,
        command: str,
        *,
        stdin: bytes | BinaryIO | None = None,
        timeout: float = 600,
        check: bool = True,
        secret_output: bool = False,
        stdout_to: BinaryIO | None = None,
        shown: str | None = None,
        quiet: bool = False,  # as a Connection's: the caller polls and logs what changed
    ) -> CommandResult:
        assert stdout_to is None, "not needed by a test restore"
        command = command.replace(f"{ETCD_BIN_DIR}/", f"{self.bin_dir}/")
        data = stdin if stdin is None or isinstance(stdin, bytes) else stdin.read()
        began = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", command],
            input=data,
            capture_output=True,
            cwd=self.home,
            env=dict(os.environ, PATH=f"{self.bin_dir}:{os.environ['PATH']}"),
            timeout=timeout,
        )
        result = CommandResult(
            self.name,
            shown or command,
            done.returncode,
            done.stdout,
            done.stderr.decode("utf-8", "replace"),
            time.monotonic() - began,
        )
        if check and not result.ok:
            raise CommandFailed(result, None, shown)
        unit = re.match(r"systemd-run .*--unit=(\S+)", command)
        if unit and result.ok:
            self.started(unit[1])
        return result

    ask = run  # a question runs as any command here


def listeners(pid: int) -> tuple[list[str], list[str]]:
    """The TCP addresses (hex, as /proc shows them) and unix socket paths process `pid`
    listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with_inode = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        if with_inode:
            inodes.add(with_inode[1])
    tcp = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                tcp.append(fields[1])
    unix = []
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()  # Num RefCount Protocol Flags Type St Inode [Path]
        if len(fields) == 8 and fields[6] in inodes and int(fields[3], 16) & 0x10000:
            unix.append(fields[7])  # __SO_ACCEPTCON: listening
    return tcp, unix


@pytest.fixture
def host(tmp_path: Path, monkeypatch):
    for tool in ("etcd", "etcdctl"):
        if not shutil.which(tool):
            if REQUIRED:
                pytest.fail(f"{tool} is not installed (apt-get install etcd-server etcd-client)")
            pytest.skip(f"{tool} is not installed (apt-get install etcd-server etcd-client)")
    bin_dir, home, units = tmp_path / "bin", tmp_path / "home", tmp_path / "units"
    for directory in (bin_dir, home, units):
        directory.mkdir()
    for tool in ("etcd", "etcdctl"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    fake = f"exec {sys.executable} {FAKE_SYSTEMD} {units}"
    (bin_dir / "systemd-run").write_text(f'#!/bin/sh\n{fake} run "$@"\n')
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\n{fake} "$@"\n')
    for script in ("systemd-run", "systemctl"):
        (bin_dir / script).chmod(0o755)
    # Short: etcdctl's path to the client socket must fit in 107 bytes.
    monkeypatch.setattr(etcd_verify, "ETCD_VERIFY_DIR", str(tmp_path / "v"))
    seen: dict[str, object] = {}

    def started(unit: str) -> None:
        pid = int((units / f"{unit}.pid").read_text())
        tcp, unix = listeners(pid)
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        seen.update(pid=pid, tcp=tcp, unix=unix, cwd=cwd, mode=stat.S_IMODE(cwd.stat().st_mode))
        seen["sockets"] = [(cwd / path).resolve() for path in unix]

    yield LocalHost(bin_dir, home, started), seen
    for pid_file in units.glob("*.pid"):  # a test that failed half-way
        subprocess.run([sys.executable, FAKE_SYSTEMD, str(units), "stop", pid_file.stem])


def backup(etcd: Etcd, host: LocalHost, catalogue: Path, keys: int = 5) -> Manifest:
    """A plain backup of `etcd` in `catalogue`, its manifest as `etcd backup` writes it."""
    endpoint = etcd.endpoints[0]
    for i in range(keys):
        etcd.txn_put(f"/registry/secrets/default/token-{i}", b"secret", None)
    source = EtcdCtl(host, NO_TLS, [endpoint])  # type: ignore[arg-type]
    catalogue.mkdir(mode=0o700)
    file = catalogue / "lab-1.db"
    host.run(f"( {source.snapshot_save_streaming(endpoint, str(file))} ) >/dev/null")
    status = source.snapshot_status(str(file))
    data = file.read_bytes()
    checked = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = Manifest(
        name="lab-1",
        cluster="lab",
        created=now().isoformat(),
        origin="backup",
        kubernetes_version="1.33.1",
        etcd_version="",
        source={"host": "cp1", "member": "etcd_verify", "endpoint": endpoint},
        members=[],
        revision=status.revision,
        hash=status.hash,
        total_keys=status.total_keys,
        total_size=status.total_size,
        keys=source.count_keys(status.revision),
        hash_kv=source.hash_kv(endpoint, status.revision),
        snapshot=checked,
        file={"name": file.name, **checked},
        encryption=None,
    )
    LocalStore(catalogue).write_manifest(manifest)
    return manifest


def test_the_throwaway_etcd_listens_only_in_a_private_directory(
    etcd: Etcd, host, tmp_path: Path
) -> None:
    local, seen = host
    catalogue = tmp_path / "backups"
    made = backup(etcd, local, catalogue)
    cluster = spec_from_text(CLUSTER, tmp_path / "cluster.yaml").cluster
    ctx = SimpleNamespace(cluster=cluster, notes=[])

    Executor(ctx, {"cp1": local}).execute(etcd_verify.TestRestore("cp1", made.name, str(catalogue)))  # type: ignore[arg-type]

    # While it ran: no TCP port at all, and unix sockets only in a directory of root's
    # alone (others can neither enter it nor so reach the sockets inside).
    assert seen["tcp"] == [], f"the throw-away etcd listened on TCP: {seen}"
    work = seen["cwd"]
    assert work.parent == tmp_path / "v" and seen["mode"] == 0o700, seen
    assert len(seen["sockets"]) == 2 and all(s.parent == work for s in seen["sockets"]), seen
    # ... and it answered k8sboot as it should, then went away with its directory.
    test = LocalStore(catalogue).read_manifest(made.name).verification["test_restore"]
    assert test["ok"] is True, test
    assert (test["revision"], test["keys"], test["hash_kv"]) == (
        made.revision,
        made.keys,
        made.hash_kv,
    )
    assert made.keys >= 5
    assert not alive(seen["pid"]) and not work.exists()
    assert not any(local.home.iterdir())  # nothing where etcdctl ran


def test_a_snapshot_of_an_empty_etcd_verifies(host, tmp_path: Path) -> None:
    """`snapshot status` says revision 0 (no key), the restored member serves revision 1
    (an empty store's): the same snapshot."""
    local, _ = host
    catalogue = tmp_path / "backups"
    (tmp_path / "empty").mkdir()
    with etcd_server(tmp_path / "empty", "empty") as empty:
        made = backup(empty, local, catalogue, keys=0)
    assert (made.revision, made.keys) == (0, 0)
    cluster = spec_from_text(CLUSTER, tmp_path / "cluster.yaml").cluster
    ctx = SimpleNamespace(cluster=cluster, notes=[])

    Executor(ctx, {"cp1": local}).execute(etcd_verify.TestRestore("cp1", made.name, str(catalogue)))  # type: ignore[arg-type]

    test = LocalStore(catalogue).read_manifest(made.name).verification["test_restore"]
    assert test["ok"] is True, test
    assert (test["revision"], test["keys"], test["hash_kv"]) == (1, 0, made.hash_kv)


@pytest.mark.parametrize("origin", ["backup", "pre-restore"])
def test_an_etcd_with_no_keys_is_never_kept_as_a_backup(
    host, tmp_path: Path, monkeypatch, origin
) -> None:
    """A kubeadm cluster's etcd always holds keys: an empty one is another etcd (or was
    emptied). A backup of it is refused; before a restore there is nothing to keep."""
    local, _ = host
    monkeypatch.setattr(topology, "tls_on", lambda cluster, host: NO_TLS)
    cluster = spec_from_text(CLUSTER, tmp_path / "cluster.yaml").cluster
    ctx = SimpleNamespace(cluster=cluster, notes=[], nodes={})
    (tmp_path / "empty").mkdir()
    with etcd_server(tmp_path / "empty", "empty") as empty:
        save = SaveSnapshot("cp1", empty.endpoints[0], "empty", "asked", origin)
        if origin == "backup":
            with pytest.raises(
                etcd_backup.EmptyKeyspace, match=r"holds no keys.*nothing was saved"
            ):
                Executor(ctx, {"cp1": local}).execute(save)  # type: ignore[arg-type]
        else:
            outcome = Executor(ctx, {"cp1": local}).execute(save)  # type: ignore[arg-type]
            assert outcome.notes == (
                f"no pre-restore snapshot: etcd member empty ({empty.endpoints[0]}) holds no "
                "keys, nothing to keep",
            )
    assert not (tmp_path / ".k8sboot").exists()  # no catalogue, no file
    assert not any(local.home.iterdir())
