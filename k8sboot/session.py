"""One way to reach a cluster's hosts: the transport (pinned host keys, a run log), the
probes that observe them, and the API question. The pipeline runs workflows through it;
the read-only commands (health, certs check, etcd health/status/members/alarms) look
through it without a lock, with a short connect timeout so a dead host costs one timeout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress

from k8sboot.errors import K8sbootError, MachineError
from k8sboot.facts import (
    API_ANSWER_TIMEOUT,
    Facts,
    ProbeRequest,
    Wanted,
    probe,
    probe_cluster,
)
from k8sboot.inventory import ssh_target
from k8sboot.report import Reporter
from k8sboot.runlog import RunLog
from k8sboot.spec import Cluster
from k8sboot.state import StateDir
from k8sboot.step import Context
from k8sboot.timeouts import READ_ONLY_CONNECT_TIMEOUT
from k8sboot.transport import HostKeys, ReadOnlyHosts, Transport, require_ssh_client

BUSY_TIMEOUT = 600.0

# Given the cluster and what the probes found: a hint for hosts that cannot be reached
# (which of them etcd needs, and what to do if they are lost), or None.
ExplainUnreachable = Callable[[Cluster, Facts], "str | None"]


def open_transport(
    cluster: Cluster, state: StateDir, log: RunLog, connect_timeout: float | None = None
) -> Transport:
    return Transport(
        [ssh_target(cluster, h) for h in cluster.hosts],
        HostKeys(state.known_hosts, cluster.ssh.host_key_policy),
        log,
        cluster.ssh.connect_timeout if connect_timeout is None else connect_timeout,
    )


@contextmanager
def read_only(cluster: Cluster, command: str) -> Iterator[ReadOnlyHosts]:
    """The hosts for a command that changes nothing, through the view planning gets (it
    reads and asks, nothing more): no lock, its own run log."""
    with unlocked(cluster, command) as transport:
        yield ReadOnlyHosts(transport)


@contextmanager
def unlocked(cluster: Cluster, command: str) -> Iterator[Transport]:
    """A transport for a command that takes no lock (it changes no state k8sboot keeps),
    with its own run log."""
    assert cluster.state_dir is not None
    state = StateDir(cluster.state_dir).ensure()
    log = RunLog.for_run(state.logs, command)
    timeout = min(float(cluster.ssh.connect_timeout), READ_ONLY_CONNECT_TIMEOUT)
    transport = open_transport(cluster, state, log, timeout)
    try:
        yield transport
    finally:
        transport.close()
        log.close()


def ssh_command(cluster: Cluster, node: str, remote: Sequence[str], tty: bool | None) -> list[str]:
    """The `ssh` command line to `node` (see Connection.openssh_command), once a connection
    as every command makes it has pinned or checked the host's key, or said in one line why
    the host cannot be reached."""
    assert cluster.state_dir is not None
    require_ssh_client()
    state = StateDir(cluster.state_dir).ensure()
    with open_transport(cluster, state, RunLog(None)) as transport:  # nothing runs to log
        connection = transport[node].open()
    return connection.openssh_command(remote, tty)


def gather(
    cluster: Cluster,
    transport: Transport,
    request: ProbeRequest,
    needs_all: bool,
    reporter: Reporter | None = None,
    explain: ExplainUnreachable | None = None,
) -> Facts:
    facts = probe(transport, [h.name for h in cluster.hosts], request)
    deadline = time.monotonic() + BUSY_TIMEOUT
    # A killed run can leave kubeadm or apt working on a host; acting beside it would
    # race it. Wait for it to finish, then look again.
    while busy := {n: f.busy for n, f in facts.hosts.items() if f.busy}:
        if time.monotonic() > deadline:
            detail = "; ".join(f"{n}: {', '.join(p)}" for n, p in busy.items())
            raise MachineError(f"still running after {BUSY_TIMEOUT:.0f}s: {detail}")
        for name, processes in busy.items():
            if reporter:
                reporter.progress(name, f"waiting for {', '.join(processes)} to finish")
        time.sleep(2)
        again = probe(transport, list(busy), request)
        facts.hosts.update(again.hosts)
        facts.errors.update(again.errors)
    if facts.errors and needs_all:
        first = next(iter(facts.errors.values()))
        hint = explain(cluster, facts) if explain else None
        if len(facts.errors) == 1 and isinstance(first, K8sbootError) and not hint:
            raise first
        raise MachineError(
            "; ".join(str(e) for e in facts.errors.values()) + (f" ({hint})" if hint else "")
        )
    return facts


def ask_api(ctx: Context, wait: int = API_ANSWER_TIMEOUT) -> None:
    """The Nodes and whether init finished, once a control plane was initialised. An API
    that does not answer is observed state like any other: recorded with its reason, and
    the steps that need it say so; the others do their work."""
    if ctx.initialised:
        view = probe_cluster(ctx.view[ctx.api_host.name], wait)
        ctx.nodes, ctx.init_finished, ctx.api = view.nodes, view.init_finished, view.api


@contextmanager
def looking(
    cluster: Cluster,
    command: str,
    wanted: Iterable[Wanted] = (),
    api_wait: int = API_ANSWER_TIMEOUT,
) -> Iterator[Context]:
    """Observed state for a read-only command: one probe per host (hosts that cannot be
    reached are simply absent), and the API's answer when it gives one in `api_wait`."""
    assert cluster.state_dir is not None
    with unlocked(cluster, command) as transport:
        facts = gather(cluster, transport, ProbeRequest.for_(wanted), needs_all=False)
        view = ReadOnlyHosts(transport)
        ctx = Context(cluster, StateDir(cluster.state_dir), view, transport.log, facts)
        with suppress(K8sbootError):
            ask_api(ctx, api_wait)
        yield ctx
