"""`etcd verify`: a backup's integrity and authenticity checked here, then restored
into a throw-away etcd on a host and compared."""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass
from typing import Any

from k8sboot.actions import Action, OnHost, OnThisMachine
from k8sboot.errors import MachineError
from k8sboot.etcd import topology
from k8sboot.etcd.catalogue import (
    Manifest,
    Store,
    now,
)
from k8sboot.etcd.checks import (
    Unauthenticated,
    VerifyFailed,
    check_status,
    local_check,
    served_revision,
    upload_plain,
)
from k8sboot.etcd.client import NO_TLS, EtcdCtl
from k8sboot.etcd.stores import store_at
from k8sboot.etcd.tools import EtcdTools, detect
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.host_state import ETCD_VERIFY_DIR
from k8sboot.spec import Host
from k8sboot.step import Context, Step
from k8sboot.transport import Connection


def test_host(ctx: Context) -> Host:
    """Where a throw-away etcd can run: a reachable member (it has etcd's binary, or runs
    etcd, whose binary is borrowed)."""
    for host in topology.members(ctx.cluster):
        if host.name in ctx.facts.hosts:
            return host
    raise MachineError("no etcd member can be reached over SSH to test-restore on")


class EtcdVerify(Step):
    title = "etcd verify"

    def __init__(self, store: Store, manifest: Manifest):
        self.store = store
        self.manifest = manifest

    def plan(self, ctx: Context) -> list[Action]:
        name, location = self.manifest.name, self.store.location
        try:
            local_check(self.store, self.manifest, ctx.cluster)
        except Unauthenticated:
            raise
        except VerifyFailed as error:  # recorded as FAILED, and the run fails
            return [RecordIntegrity(location, name, now().isoformat(), str(error))]
        actions: list[Action] = []
        if self.manifest.verification.get("integrity") != "ok":  # failed before, passes now
            actions.append(RecordIntegrity(location, name, now().isoformat()))
        return [*actions, TestRestore(test_host(ctx).name, name, location)]


@dataclass(frozen=True)
class TestRestore(OnHost):
    """Restore a backup into a scratch directory (0700) on a host, run a throw-away etcd on
    it with unix sockets in that directory, compare revision, keys and hash with the
    manifest, remove it all again."""

    backup: str
    location: str  # of the catalogue (or directory) that holds it

    def describe(self) -> str:
        return f"test-restore {self.backup} into a throw-away etcd"


@dataclass(frozen=True)
class RecordIntegrity(OnThisMachine):
    """Record in a backup's manifest how the check of its stored file went (what `etcd
    list` shows); a failed check then fails the run with its reason."""

    location: str  # of the catalogue (or directory) that holds it
    backup: str
    checked: str  # when (ISO 8601)
    failure: str = ""  # why the check failed; empty when it passed

    def describe(self) -> str:
        if self.failure:
            return f"record that {self.backup} failed its check: {self.failure}"
        return f"record that {self.backup} passes its check again"


# The throw-away etcd serves every Secret of the cluster without TLS or authentication, so
# it listens on unix sockets only, in the 0700 work directory that only root can enter: no
# TCP port, no other process on the host. etcd binds a unix URL's host as the socket's path,
# relative to its working directory (the peer listener takes nothing else, and advertised
# URLs must read "host:port"; etcd v3.5.16 server/embed/etcd.go configurePeerListeners and
# config.go checkHostURLs, the same in v3.4.23), hence "NAME:0" and WorkingDirectory. The
# peer socket is never dialled: the member is alone in its cluster.
_CLIENT_SOCKET, _PEER_SOCKET = "client.sock:0", "peer.sock:0"


@handles(RecordIntegrity)
def record_integrity(executor: Executor, action: RecordIntegrity) -> Outcome:
    store = store_at(executor.ctx.cluster, action.location)
    manifest = store.read_manifest(action.backup)
    assert manifest is not None
    manifest.verification["integrity"] = f"FAILED: {action.failure}" if action.failure else "ok"
    manifest.verification["checked"] = action.checked
    store.write_manifest(manifest)
    if action.failure:
        raise VerifyFailed(action.failure)
    return Outcome(())


@handles(TestRestore)
def test_restore(executor: Executor, action: TestRestore) -> Outcome:
    ctx = executor.ctx
    store = store_at(ctx.cluster, action.location)
    manifest = store.read_manifest(action.backup)
    assert manifest is not None
    connection = executor.transport[action.host]
    tools = detect(connection)
    tag = secrets.token_hex(4)
    work = f"{ETCD_VERIFY_DIR}/{tag}"
    unit = f"k8sboot-etcd-verify-{tag}"
    result: dict[str, Any] = {"time": now().isoformat(), "host": action.host}
    try:
        upload_plain(executor, connection, store, manifest, f"{work}/snapshot.db")
        offline = EtcdCtl(connection, NO_TLS, [], tools)
        executor.progress(action.host, "snapshot status")
        check_status(offline.snapshot_status(f"{work}/snapshot.db"), manifest, action.host)
        client_url, peer_url = f"unix://{_CLIENT_SOCKET}", f"unix://{_PEER_SOCKET}"
        endpoint = f"unix://{work}/{_CLIENT_SOCKET}"  # etcdctl runs in another directory
        executor.progress(action.host, "restore into a scratch directory")
        offline.snapshot_restore(
            f"{work}/snapshot.db",
            f"{work}/data",
            "verify",
            f"verify={peer_url}",
            f"k8sboot-verify-{tag}",
            peer_url,
        )
        binary = _etcd_binary(connection, tools, work)
        executor.progress(action.host, "start a throw-away etcd on a private unix socket")
        connection.run(
            f"systemd-run --quiet --collect --unit={unit} -p Type=notify -p TimeoutStartSec=300 "
            f"-p WorkingDirectory={work} -p UMask=0077 "
            f"{binary} --name verify --data-dir {work}/data "
            f"--listen-client-urls {client_url} --advertise-client-urls {client_url} "
            f"--listen-peer-urls {peer_url} --initial-advertise-peer-urls {peer_url} "
            f"--initial-cluster verify={peer_url} --quota-backend-bytes {8 * 2**30}",
            timeout=330,
            shown=f"systemd-run {unit}",
        )
        live = EtcdCtl(connection, NO_TLS, [endpoint], tools)
        status = live.status([endpoint])
        revision = status[0].revision if status else 0
        keys = live.count_keys(manifest.revision)
        hash_kv = live.hash_kv(endpoint, manifest.revision)
        result |= {"revision": revision, "keys": keys, "hash_kv": hash_kv}
        problems = []
        if revision != served_revision(manifest.revision):
            problems.append(f"revision {revision}, manifest {manifest.revision}")
        if manifest.keys is not None and keys != manifest.keys:
            problems.append(f"{keys} keys, manifest {manifest.keys}")
        if manifest.hash_kv is not None and hash_kv != manifest.hash_kv:
            problems.append(f"KV hash {hash_kv}, manifest {manifest.hash_kv}")
        if problems:
            raise VerifyFailed(
                f"backup {manifest.name}: the restored data differs: " + "; ".join(problems)
            )
        result["ok"] = True
    except MachineError as error:
        result |= {"ok": False, "error": str(error)}
        raise
    finally:
        connection.run(
            f"systemctl stop {unit} 2>/dev/null; rm -rf {shlex.quote(work)}",
            check=False,
            timeout=120,
        )
        manifest.verification["test_restore"] = result
        store.write_manifest(manifest)
    verified = (
        f"backup {manifest.name} verified: restored and served by a throw-away etcd on "
        f"{action.host}: revision {result['revision']}, {result['keys']} keys, KV hash "
        f"{result['hash_kv']} as recorded"
    )
    return Outcome((), notes=(verified,))


def _etcd_binary(connection: Connection, tools: EtcdTools, work: str) -> str:
    """etcd's server binary: on the host's PATH, else a copy of the running member's
    (kubeadm runs etcd from an image; its binary is static)."""
    if tools.etcd:
        return tools.etcd
    copy = f"{work}/etcd"
    result = connection.run(
        f"pid=$(pgrep -xo etcd) && cp /proc/$pid/exe {copy} && chmod 700 {copy}",
        check=False,
        timeout=60,
    )
    if not result.ok:
        raise MachineError(
            f"{connection.name}: no etcd binary to test-restore with (none on PATH, no running "
            "etcd to borrow one from)"
        )
    return copy
