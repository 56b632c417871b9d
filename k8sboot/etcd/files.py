"""Files k8sboot renders for etcd (templates/etcd/): the external members' configuration
and the scheduled-snapshot units."""

from __future__ import annotations

from pathlib import PurePosixPath

from k8sboot.etcd import topology
from k8sboot.etcd.client import client_url, peer_url
from k8sboot.facts import Wanted
from k8sboot.host_state import ETCD_SNAPSHOT_DIR
from k8sboot.kubeadm_node import ETCD_DATA_DIR
from k8sboot.render import RenderedFile, render_template
from k8sboot.spec import Cluster, Host
from k8sboot.versions import ETCD, ETCDCTL, ETCDUTL

SNAPSHOT_SCRIPT = PurePosixPath("/usr/local/lib/k8sboot/etcd-snapshot")
SNAPSHOT_SERVICE = PurePosixPath("/etc/systemd/system/k8sboot-etcd-snapshot.service")
SNAPSHOT_TIMER = PurePosixPath("/etc/systemd/system/k8sboot-etcd-snapshot.timer")
TIMER_UNIT = "k8sboot-etcd-snapshot.timer"


def member_files(cluster: Cluster, host: Host) -> list[RenderedFile]:
    """An external etcd member's settings and its systemd unit. Deterministic: a
    re-render equals what is on the host when converged."""
    listen = [client_url(host.ip)]
    if host.ip != "127.0.0.1":
        listen.append(client_url("127.0.0.1"))
    env = render_template(
        "etcd/etcd.env.j2",
        cluster_name=cluster.name,
        name=host.name,
        data_dir=ETCD_DATA_DIR,
        listen_client_urls=",".join(listen),
        client_url=client_url(host.ip),
        peer_url=peer_url(host.ip),
        pki=str(topology.EXTERNAL_PKI),
    )
    unit = render_template(
        "etcd/etcd.service.j2",
        cluster_name=cluster.name,
        name=host.name,
        etcd=ETCD,
        env_file=str(topology.EXTERNAL_ENV),
        bootstrap_env_file=str(topology.EXTERNAL_BOOTSTRAP_ENV),
    )
    return [
        RenderedFile(topology.EXTERNAL_ENV, env),
        RenderedFile(topology.EXTERNAL_UNIT, unit),
    ]


def bootstrap_file(host: Host, initial_cluster: str, state: str, token: str) -> RenderedFile:
    content = render_template(
        "etcd/etcd-bootstrap.env.j2",
        name=host.name,
        initial_cluster=initial_cluster,
        state=state,
        token=token,
    )
    return RenderedFile(topology.EXTERNAL_BOOTSTRAP_ENV, content)


def bootstrap_token(cluster: Cluster) -> str:
    return f"k8sboot-{cluster.name}"


def snapshot_files(cluster: Cluster, host: Host, recipient: str | None) -> list[RenderedFile]:
    """The scheduled snapshot on a control plane: a script, its service and its timer.
    With an age `recipient`, the script keeps its snapshots encrypted to it (see
    etcd/scheduled.py)."""
    tls = topology.tls_on(cluster, host)
    if topology.external(cluster):
        endpoints = [topology.endpoint(h) for h in topology.members(cluster)]
    else:
        endpoints = [client_url(host.ip)]
    script = render_template(
        "etcd/etcd-snapshot.sh.j2",
        cluster_name=cluster.name,
        host=host.name,
        endpoints=endpoints,
        cacert=tls.cacert,
        cert=tls.cert,
        key=tls.key,
        directory=ETCD_SNAPSHOT_DIR,
        keep=cluster.backup.retention.last,
        etcdctl=ETCDCTL,
        etcdutl=ETCDUTL,
        recipient=recipient,
    )
    service = render_template("etcd/k8sboot-etcd-snapshot.service.j2", script=str(SNAPSHOT_SCRIPT))
    timer = render_template(
        "etcd/k8sboot-etcd-snapshot.timer.j2", on_calendar=cluster.backup.schedule or ""
    )
    return [
        RenderedFile(SNAPSHOT_SCRIPT, script, mode=0o755),
        RenderedFile(SNAPSHOT_SERVICE, service),
        RenderedFile(SNAPSHOT_TIMER, timer),
    ]


def wanted(cluster: Cluster) -> Wanted:
    """What the etcd steps plan from: the files k8sboot writes for etcd, whether
    scheduled snapshots left a directory, and whether age (which seals them) is installed."""
    return Wanted(files=tuple(probe_files(cluster)), packages=("age",), exists=(ETCD_SNAPSHOT_DIR,))


def probe_files(cluster: Cluster) -> list[str]:
    """Files whose hashes the etcd steps plan from (one probe round trip per host)."""
    files = topology.probe_files(cluster)
    if topology.external(cluster):
        files.append(str(topology.EXTERNAL_BOOTSTRAP_ENV))
    return [*files, str(SNAPSHOT_SCRIPT), str(SNAPSHOT_SERVICE), str(SNAPSHOT_TIMER)]
