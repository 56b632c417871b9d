"""SSH for read-only commands: no lock (they change nothing), pinned host keys, a run log,
and a short connect timeout, so that a dead host costs one timeout, not a retry loop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from k8sboot.inventory import ssh_target
from k8sboot.runlog import RunLog
from k8sboot.spec import Cluster
from k8sboot.state import StateDir, run_id
from k8sboot.timeouts import READ_ONLY_CONNECT_TIMEOUT
from k8sboot.transport import HostKeys, Transport


@contextmanager
def session(cluster: Cluster, command: str) -> Iterator[Transport]:
    assert cluster.state_dir is not None
    state = StateDir(cluster.state_dir).ensure()
    log = RunLog(state.logs / f"{run_id()}-{command}.log")
    transport = Transport(
        [ssh_target(cluster, h) for h in cluster.hosts],
        HostKeys(state.known_hosts, cluster.ssh.host_key_policy),
        log,
        min(float(cluster.ssh.connect_timeout), READ_ONLY_CONNECT_TIMEOUT),
    )
    try:
        yield transport
    finally:
        transport.close()
        log.close()
