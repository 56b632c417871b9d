"""A read-only look at the cluster for the etcd commands that change nothing (health,
status, members, alarms): no lock, the shared read-only SSH session, one probe per host;
hosts that cannot be reached are simply absent from the facts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from k8sboot.errors import K8sbootError
from k8sboot.health.session import session
from k8sboot.pipeline import ask_api, gather
from k8sboot.spec import Cluster
from k8sboot.state import StateDir
from k8sboot.steps.base import Context
from k8sboot.timeouts import ETCD_ANSWER_TIMEOUT
from k8sboot.transport import ReadOnlyHosts


@contextmanager
def looking(cluster: Cluster, command: str) -> Iterator[Context]:
    assert cluster.state_dir is not None
    with session(cluster, command) as transport:
        facts = gather(cluster, transport, needs_all=False)
        view = ReadOnlyHosts(transport)
        ctx = Context(cluster, StateDir(cluster.state_dir), view, transport.log, facts)
        # The API may be down: etcd is what is asked about, and the API answers no sooner
        # than etcd does.
        with suppress(K8sbootError):
            ask_api(ctx, ETCD_ANSWER_TIMEOUT)
        yield ctx
