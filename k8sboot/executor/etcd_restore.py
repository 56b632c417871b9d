"""The restore, in the order k8sboot/steps/etcd_restore.py plans it. Every step that stops
or moves something says, when it fails, where things were put and how to undo it."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from k8sboot.errors import MachineError
from k8sboot.etcd import restore_record, topology
from k8sboot.etcd.actions import (
    CheckRestored,
    ConfirmRestore,
    RecordRestore,
    ReissueMemberCerts,
    RollBackData,
    StageRestore,
    StartApiServers,
    StartRestoredEtcd,
    StopControlPlane,
    SwapDataDirs,
    UpdateKubeadmConfig,
)
from k8sboot.etcd.catalogue import PRE_RESTORE, store_at
from k8sboot.etcd.client import NO_TLS, EtcdCtl
from k8sboot.etcd.pki import CA
from k8sboot.etcd.restore_record import RestoreRecord, kept_dir
from k8sboot.etcd.tools import detect
from k8sboot.executor.core import Executor, Outcome, handles, raise_first, read_required
from k8sboot.executor.etcd import START_TIMEOUT, wait_healthy
from k8sboot.executor.etcd_backup import upload_plain
from k8sboot.facts import KUBECTL, parse_nodes
from k8sboot.host_state import ETCD_RESTORE_STAGE_DIR
from k8sboot.kubeadm_node import (
    API_SERVER_PORT,
    CA_CERT,
    ETCD_DATA_DIR,
    ETCD_PKI_DIR,
    MANIFESTS_DIR,
)
from k8sboot.spec import Host
from k8sboot.transport import Connection

STOP_TIMEOUT = 180
API_TIMEOUT = 300.0


def _stage(tag: str) -> str:
    return f"{ETCD_RESTORE_STAGE_DIR}/{tag}"


def _scratch(tag: str) -> str:
    return f"{ETCD_DATA_DIR}/k8sboot-restore-{tag}"


def _aside(tag: str) -> str:
    return f"{_stage(tag)}/manifests"


def _hosts(executor: Executor, names: tuple[str, ...]) -> list[Host]:
    hosts = [executor.ctx.cluster.host(n) for n in names]
    return [h for h in hosts if h is not None]


@handles(StageRestore)
def stage(executor: Executor, action: StageRestore) -> Outcome:
    ctx = executor.ctx
    store = store_at(ctx.cluster, action.location)
    manifest = store.read_manifest(action.backup)
    assert manifest is not None
    initial = ",".join(f"{t.name}={t.peer_url}" for t in action.targets)
    token = f"k8sboot-{ctx.cluster.name}-{action.tag}"
    by_host = {t.host: t for t in action.targets}

    def one(connection: Connection) -> None:
        target = by_host[connection.name]
        snapshot = f"{_stage(action.tag)}/snapshot.db"
        try:
            upload_plain(executor, connection, store, manifest, snapshot)
            offline = EtcdCtl(connection, NO_TLS, [], detect(connection))
            executor.progress(connection.name, "restore into a scratch directory")
            connection.run(f"rm -rf {_scratch(action.tag)}", timeout=600)
            offline.snapshot_restore(
                snapshot,
                _scratch(action.tag),
                target.name,
                initial,
                token,
                target.peer_url,
                action.bump_revision,
            )
        finally:
            connection.run(f"rm -f {snapshot}", check=False, timeout=60)

    results = executor.transport.each(by_host, one)
    if any(isinstance(r, BaseException) for r in results.values()):
        # Nothing was stopped: leave nothing of the attempt behind either.
        executor.transport.each(
            by_host,
            lambda c: c.run(f"rm -rf {_scratch(action.tag)}", check=False, timeout=600),
        )
    raise_first(results)
    return Outcome(tuple(by_host))


@handles(RecordRestore)
def record(executor: Executor, action: RecordRestore) -> Outcome:
    ctx = executor.ctx
    store = store_at(ctx.cluster, action.location)
    taken = sorted(
        (m.created, m.name)
        for m in store.manifests()
        if m.origin == PRE_RESTORE and m.cluster == ctx.cluster.name and m.created >= action.since
    )
    restore_record.write(
        ctx.state,
        RestoreRecord(
            tag=action.tag,
            backup=action.backup,
            location=action.location,
            targets=list(action.targets),
            apiservers=list(action.apiservers),
            external=action.external,
            etcd_servers=action.etcd_servers,
            phase="stopping",
            pre_restore=taken[-1][1] if taken else None,
        ),
    )
    ctx.notes.append(
        f"restore tag {action.tag}: the data etcd had before is kept in "
        f"{kept_dir(action.tag)} on {', '.join(action.targets)} (k8sboot never deletes it)"
    )
    return Outcome(())


def _phase(executor: Executor, tag: str, phase: str) -> None:
    state = executor.ctx.state
    current = restore_record.read(state)
    if current is not None and current.tag == tag:
        current.phase = phase
        restore_record.write(state, current)


@contextlib.contextmanager
def _undoable(executor: Executor, tag: str | None = None) -> Iterator[None]:
    """Past the first stop, every failure says how to finish or undo the restore."""
    try:
        yield
    except MachineError as error:
        current = restore_record.read(executor.ctx.state)
        if current is None or tag not in (None, current.tag):
            raise
        raise MachineError(f"{error}; {current.how()}") from None


def _restoring(handler: Callable[[Executor, Any], Outcome]) -> Callable[[Executor, Any], Outcome]:
    @functools.wraps(handler)
    def run(executor: Executor, action: Any) -> Outcome:
        with _undoable(executor):
            return handler(executor, action)

    return run


def _wait_port_closed(connection: Connection, port: int, what: str) -> None:
    result = connection.run(
        f"for i in $(seq {STOP_TIMEOUT}); do "
        f"ss -Hltn 'sport = :{port}' | grep -q . || exit 0; sleep 1; done; exit 1",
        check=False,
        timeout=STOP_TIMEOUT + 30,
        shown=f"wait for {what} to stop",
    )
    if not result.ok:
        raise MachineError(f"{connection.name}: {what} still listens on :{port}")


@handles(StopControlPlane)
def stop(executor: Executor, action: StopControlPlane) -> Outcome:
    aside = _aside(action.tag)

    def move_aside(name: str, port: int, what: str):
        def run(connection: Connection) -> None:
            executor.progress(connection.name, f"stop {what}: {name} aside")
            connection.run(
                f"install -d -m 700 {aside} && if [ -e {MANIFESTS_DIR}/{name} ]; "
                f"then mv {MANIFESTS_DIR}/{name} {aside}/{name}; fi",
                timeout=60,
            )
            _wait_port_closed(connection, port, what)

        return run

    with _undoable(executor, action.tag):
        raise_first(
            executor.transport.each(
                action.apiservers,
                move_aside("kube-apiserver.yaml", API_SERVER_PORT, "the API server"),
            )
        )
        if action.external:

            def stop_service(connection: Connection) -> None:
                executor.progress(connection.name, "systemctl stop etcd")
                connection.run("systemctl stop etcd", timeout=STOP_TIMEOUT)

            raise_first(executor.transport.each(action.etcd, stop_service))
        else:
            raise_first(executor.transport.each(action.etcd, move_aside("etcd.yaml", 2380, "etcd")))
    _phase(executor, action.tag, "stopped")
    return Outcome(action.hosts)


@handles(SwapDataDirs)
def swap(executor: Executor, action: SwapDataDirs) -> Outcome:
    data = ETCD_DATA_DIR
    kept = kept_dir(action.tag)
    scratch = _scratch(action.tag)
    owner = f"chown -R etcd:etcd {data}/member; " if action.external else ""
    # Each branch is safe to run again: staged data still in the scratch directory means
    # the swap has not finished on this host; the marker means it has.
    script = (
        f"set -e; install -d -m 700 {kept}; cd {data}; "
        f"if [ -d {scratch}/member ]; then "
        f"  if [ -d member ]; then mv -T member {kept}/member; fi; "
        f"  mv -T {scratch}/member member; rmdir {scratch}; chmod 700 member; {owner}"
        f"  touch {kept}/swapped; "
        f"elif [ ! -e {kept}/swapped ]; then "
        f"  echo 'no restored data in {scratch} and no finished swap' >&2; exit 1; "
        "fi"
    )

    def one(connection: Connection) -> None:
        executor.progress(connection.name, f"keep {data}/member in {kept}; restored data in")
        connection.run(script, timeout=600, shown=f"swap {data}/member")

    with _undoable(executor, action.tag):
        raise_first(executor.transport.each(action.targets, one))
    _phase(executor, action.tag, "swapped")
    return Outcome(action.targets)


@handles(RollBackData)
def roll_back(executor: Executor, action: RollBackData) -> Outcome:
    data = ETCD_DATA_DIR
    kept = kept_dir(action.tag)
    # The data from before goes back; what was in its place (the restored data, and what
    # the cluster wrote since) is kept beside it. A host whose data never moved keeps it.
    script = (
        f"set -e; cd {data}; "
        f"if [ -d {kept}/member ]; then "
        f"  if [ -d member ]; then mv -T member {kept}/member.restored; fi; "
        f"  mv -T {kept}/member member; "
        f"elif [ -e {kept}/swapped ] && [ -d member ]; then "
        f"  mv -T member {kept}/member.restored; "
        "fi; "
        f"rm -f {kept}/swapped; rm -rf {_scratch(action.tag)}"
    )

    def one(connection: Connection) -> None:
        executor.progress(connection.name, f"put back {data}/member from {kept}")
        connection.run(script, timeout=600, shown=f"roll back {data}/member")

    with _undoable(executor, action.tag):
        raise_first(executor.transport.each(action.targets, one))
    _phase(executor, action.tag, "rolled back data")
    return Outcome(action.targets)


@handles(ReissueMemberCerts)
def reissue(executor: Executor, action: ReissueMemberCerts) -> Outcome:
    ctx = executor.ctx
    source = executor.transport[action.ca_host]
    pki = ETCD_PKI_DIR
    ca = CA.from_pem(
        read_required(source, f"{pki}/ca.crt"), read_required(source, f"{pki}/ca.key", secret=True)
    )
    host = ctx.cluster.host(action.host)
    assert host is not None
    connection = executor.transport[action.host]
    for cert in topology.stacked_member_certs(host):
        executor.progress(action.host, f"re-issue {cert.cert}")
        issued = ca.issue(cert.spec)
        connection.write_file(cert.key, issued.key_pem, 0o600)
        connection.write_file(cert.cert, issued.cert_pem, 0o644)
    return Outcome((action.host,))


def _move_back(aside: str, name: str):
    def run(connection: Connection) -> None:
        connection.run(
            f"if [ -e {aside}/{name} ]; then mv {aside}/{name} {MANIFESTS_DIR}/{name}; fi",
            timeout=60,
        )

    return run


@handles(StartRestoredEtcd)
def start_etcd(executor: Executor, action: StartRestoredEtcd) -> Outcome:

    def start_service(connection: Connection) -> None:
        executor.progress(connection.name, "systemctl start etcd")
        connection.run("systemctl start etcd", timeout=START_TIMEOUT)

    with _undoable(executor, action.tag):
        if action.external:
            raise_first(executor.transport.each(action.etcd, start_service))
        else:
            for name in action.etcd:
                executor.progress(name, "start etcd: etcd.yaml back")
            raise_first(
                executor.transport.each(action.etcd, _move_back(_aside(action.tag), "etcd.yaml"))
            )
        wait_healthy(executor, _hosts(executor, action.etcd))
    _phase(executor, action.tag, "etcd started")
    return Outcome(action.etcd)


@handles(StartApiServers)
def start_apiservers(executor: Executor, action: StartApiServers) -> Outcome:
    aside = _aside(action.tag)
    manifest = f"{aside}/kube-apiserver.yaml"
    original = f"{manifest}.before-restore"

    def point(connection: Connection) -> None:
        executor.progress(connection.name, f"--etcd-servers={action.etcd_servers}")
        # The manifest as it was stays beside it, for a rollback.
        connection.run(
            f"if [ -e {manifest} ]; then cp -n {manifest} {original} && "
            f"sed -i -E 's#(--etcd-servers=).*#\\1{action.etcd_servers}#' {manifest}; fi",
            timeout=60,
        )

    def as_before(connection: Connection) -> None:
        connection.run(f"if [ -e {original} ]; then mv {original} {manifest}; fi", timeout=60)

    with _undoable(executor, action.tag):
        if action.original:
            raise_first(executor.transport.each(action.apiservers, as_before))
        elif action.etcd_servers:
            raise_first(executor.transport.each(action.apiservers, point))
        for name in action.apiservers:
            executor.progress(name, "start the API server: kube-apiserver.yaml back")
        raise_first(
            executor.transport.each(action.apiservers, _move_back(aside, "kube-apiserver.yaml"))
        )
        wait_api(executor, action.apiservers[0])
    _phase(executor, action.tag, "API started")
    return Outcome(action.apiservers)


@handles(ConfirmRestore)
def confirm(executor: Executor, action: ConfirmRestore) -> Outcome:
    ctx = executor.ctx
    reachable = [h for h in action.staged_on if h in ctx.facts.hosts]
    raise_first(
        executor.transport.each(
            reachable,
            lambda c: c.run(
                f"rm -rf {_stage(action.tag)} && rm -f {kept_dir(action.tag)}/swapped",
                timeout=120,
            ),
        )
    )
    current = restore_record.read(ctx.state)
    if current is not None and current.tag == action.tag:
        restore_record.clear(ctx.state)
    what = "rolled back" if action.rolled_back else "restored"
    ctx.notes.append(
        f"{what} (tag {action.tag}); {kept_dir(action.tag)} on the etcd hosts keeps "
        + ("the restored data as member.restored" if action.rolled_back else "the data from before")
        + ": remove it once you no longer need it"
    )
    return Outcome(reachable)


def wait_api(executor: Executor, host: str, timeout: float = API_TIMEOUT) -> dict:
    """Until the API answers through admin.conf (the endpoint); the Nodes it lists."""
    connection = executor.transport[host]
    deadline = time.monotonic() + timeout
    while True:
        result = connection.run(
            f"{KUBECTL} get nodes -o json --request-timeout=10s",
            check=False,
            timeout=60,
            shown="kubectl get nodes",
        )
        if result.ok:
            try:
                return parse_nodes(json.loads(result.stdout))
            except ValueError:
                pass
        if time.monotonic() > deadline:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise MachineError(f"the API did not answer within {timeout:.0f}s: {tail}")
        executor.progress(host, "waiting for the API")
        time.sleep(2)


@handles(UpdateKubeadmConfig)
@_restoring
def update_kubeadm_config(executor: Executor, action: UpdateKubeadmConfig) -> Outcome:
    """The restored kubeadm-config and cluster-info are the snapshot's: after a restore onto
    other hosts they name the old endpoint, etcd members or CA. kubeadm reads them for
    joins and upgrades."""
    ctx = executor.ctx
    cluster = ctx.cluster
    connection = executor.transport[action.host]
    changed = []
    config = _get(connection, "kube-system", "kubeadm-config")
    if config is not None:
        document = yaml.safe_load(config["data"].get("ClusterConfiguration", "")) or {}
        before = json.dumps(document, sort_keys=True)
        if cluster.control_plane_endpoint.address or document.get("controlPlaneEndpoint"):
            document["controlPlaneEndpoint"] = cluster.endpoint
        etcd = document.get("etcd", {})
        if topology.external(cluster) and "external" in etcd:
            etcd["external"]["endpoints"] = [
                topology.endpoint(h) for h in topology.members(cluster)
            ]
        if json.dumps(document, sort_keys=True) != before:
            config["data"]["ClusterConfiguration"] = yaml.safe_dump(document, sort_keys=False)
            _replace(connection, config)
            changed.append("kube-system/kubeadm-config ClusterConfiguration")
    info = _get(connection, "kube-public", "cluster-info")
    if info is not None:
        kubeconfig = yaml.safe_load(info["data"].get("kubeconfig", "")) or {}
        ca = base64.b64encode(read_required(connection, CA_CERT)).decode()
        server = f"https://{cluster.endpoint}"
        dirty = False
        for entry in kubeconfig.get("clusters", []):
            current = entry.get("cluster", {})
            if current.get("certificate-authority-data") != ca or current.get("server") != server:
                current["certificate-authority-data"] = ca
                current["server"] = server
                dirty = True
        if dirty:
            info["data"]["kubeconfig"] = yaml.safe_dump(kubeconfig, sort_keys=False)
            # Signatures of the old kubeconfig are void; the bootstrap signer re-signs.
            info["data"] = {
                k: v for k, v in info["data"].items() if not k.startswith("jws-kubeconfig-")
            }
            _replace(connection, info)
            changed.append("kube-public/cluster-info (CA and endpoint)")
    if changed:
        ctx.notes.append("updated kubeadm's stored configuration: " + "; ".join(changed))
        return Outcome((action.host,))
    return Outcome(())


def _get(connection: Connection, namespace: str, name: str) -> dict | None:
    result = connection.run(
        f"{KUBECTL} -n {namespace} get configmap {name} -o json",
        check=False,
        timeout=60,
        shown=f"kubectl get configmap {namespace}/{name}",
    )
    return json.loads(result.stdout) if result.ok else None


def _replace(connection: Connection, document: dict) -> None:
    connection.run(
        f"{KUBECTL} replace -f -",
        stdin=json.dumps(document).encode(),
        timeout=60,
        shown=f"kubectl replace configmap {document['metadata']['name']}",
    )


@handles(CheckRestored)
@_restoring
def check(executor: Executor, action: CheckRestored) -> Outcome:
    ctx = executor.ctx
    cluster = ctx.cluster
    manifest = store_at(cluster, action.location).read_manifest(action.backup)
    assert manifest is not None
    wait_healthy(executor)
    nodes = wait_api(executor, action.host)
    lost = sorted(set(manifest.nodes) - set(nodes))
    if lost:
        raise MachineError(
            f"restored, but the Nodes {', '.join(lost)} of {manifest.name} are not back"
        )
    # A kubelet whose Node the snapshot lacks registered after it was taken (a restore
    # onto new machines): it registers again when restarted.
    fresh = [
        h.name for h in cluster.kube_nodes if h.name not in nodes and h.name in ctx.facts.hosts
    ]
    for name in fresh:
        executor.progress(name, "restart the kubelet: its Node is not in the snapshot")
        executor.transport[name].run("systemctl restart kubelet", timeout=120)
    deadline = time.monotonic() + API_TIMEOUT
    while fresh and not set(fresh) <= set(nodes):
        if time.monotonic() > deadline:
            missing = sorted(set(fresh) - set(nodes))
            raise MachineError(f"the kubelets of {', '.join(missing)} did not register again")
        time.sleep(2)
        nodes = wait_api(executor, action.host)
    reachable = [h.name for h in cluster.kube_nodes if h.name in ctx.facts.hosts]
    while not all(nodes[n].ready for n in reachable if n in nodes):
        if time.monotonic() > deadline:
            waiting = [n for n in reachable if n in nodes and not nodes[n].ready]
            raise MachineError(f"restored, but not Ready after the restore: {', '.join(waiting)}")
        executor.progress(action.host, "waiting for the Nodes to be Ready")
        time.sleep(2)
        nodes = wait_api(executor, action.host)
    endpoints = [topology.endpoint(h) for h in topology.members(cluster)]
    runner = next(h for h in topology.tool_hosts(cluster) if h.name in ctx.facts.hosts)
    ctl = EtcdCtl(executor.transport[runner.name], topology.tls_on(cluster, runner), endpoints)
    revisions = [s.revision for s in ctl.status(endpoints)]
    stale = sorted(set(nodes) - {h.name for h in cluster.kube_nodes})
    ctx.notes.append(
        f"restored {manifest.name} (revision {manifest.revision}); etcd is at revision "
        f"{max(revisions) if revisions else '?'}; Nodes: {', '.join(sorted(nodes))}"
        + (f"; re-registered: {', '.join(fresh)}" if fresh else "")
    )
    if stale:
        ctx.notes.append(
            f"Nodes not in the cluster file (from the snapshot): {', '.join(stale)}; "
            "remove them once you are sure they are gone (`kubectl delete node`)"
        )
    return Outcome(())
