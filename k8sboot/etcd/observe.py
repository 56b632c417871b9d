"""The etcd cluster as it is: members, their status and health, alarms, the tools on the
host that asks. Read-only; steps plan from it and the read-only commands print it.

Hosts and members are matched by the exact peer URL of the host's address; statuses and
members by member ID. Never by a piece of an address.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from k8sboot.errors import K8sbootError, MachineError
from k8sboot.etcd import topology
from k8sboot.etcd.client import (
    Alarm,
    EndpointHealth,
    EndpointStatus,
    EtcdCtl,
    Member,
    member_by_peer_url,
)
from k8sboot.etcd.tools import EtcdTools, detect
from k8sboot.kubeadm_node import ETCD_MANIFEST
from k8sboot.spec import Host
from k8sboot.step import Context

States = tuple[list[EndpointStatus], list[EndpointHealth]]


@dataclass
class EtcdView:
    runner: Host | None  # the host etcdctl ran on
    ctl: EtcdCtl | None
    tools: EtcdTools | None
    members: list[Member] = field(default_factory=list)
    statuses: dict[int, EndpointStatus] = field(default_factory=dict)  # by member ID
    health: dict[str, EndpointHealth] = field(default_factory=dict)  # by endpoint
    alarms: list[Alarm] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    quota: int = topology.DEFAULT_QUOTA

    @property
    def answers(self) -> bool:
        """The cluster answered a linearizable request (it has quorum)."""
        return bool(self.members)

    @property
    def leader_id(self) -> int | None:
        leaders = {s.leader_id for s in self.statuses.values() if s.leader_id}
        return leaders.pop() if len(leaders) == 1 else None

    def endpoint_of(self, member: Member) -> str | None:
        status = self.statuses.get(member.id)
        if status:
            return status.endpoint
        return member.client_urls[0] if member.client_urls else None

    def is_healthy(self, member: Member) -> bool:
        endpoint = self.endpoint_of(member)
        if member.id not in self.statuses or endpoint is None:
            return False
        health = self.health.get(endpoint)
        return bool(health and health.healthy) and not self.statuses[member.id].errors

    @property
    def healthy(self) -> bool:
        return (
            self.answers
            and all(self.is_healthy(m) for m in self.members if not m.learner)
            and self.leader_id is not None
            and not any(a.alarm == "CORRUPT" for a in self.alarms)
        )

    def member_of(self, host: Host) -> Member | None:
        return member_by_peer_url(self.members, host.ip)

    def problems(self) -> list[str]:
        """Why the cluster is not healthy, one reason each."""
        found = list(self.errors)
        if not self.answers:
            found.append("etcd does not answer (no quorum, or no member reachable)")
        for member in self.members:
            if member.learner:
                continue
            if not self.is_healthy(member):
                endpoint = self.endpoint_of(member) or "no client URL"
                health = self.health.get(endpoint)
                why = (health.error if health and health.error else "") or "unreachable"
                found.append(f"member {member.name or member.hex_id} ({endpoint}): {why}")
        if self.answers and self.leader_id is None:
            found.append("no leader")
        found += [f"alarm {a.alarm} on member {a.member_id:x}" for a in self.alarms]
        return found


def reachable(ctx: Context, hosts: list[Host]) -> list[Host]:
    return [h for h in hosts if h.name in ctx.facts.hosts]


def ctl_on(ctx: Context, host: Host, endpoints: list[str], tools: EtcdTools | None) -> EtcdCtl:
    return EtcdCtl(ctx.view[host.name], topology.tls_on(ctx.cluster, host), endpoints, tools)


def observe(ctx: Context, statuses: bool = True) -> EtcdView:
    """Ask etcd through every reachable host that can, all at once: each one's member list
    and, through the first, the status and health of every member's endpoint (the spec's
    and any others the list names). The first host whose member list answered is the one
    the view asks through from then on."""
    cluster = ctx.cluster
    spec_endpoints = [topology.endpoint(h) for h in topology.members(cluster)]
    view = EtcdView(None, None, None)
    candidates = reachable(ctx, topology.tool_hosts(cluster))
    if not candidates:
        view.errors.append("no etcd member or control plane can be reached over SSH")
        return view
    found = ctx.view.each([h.name for h in candidates], detect)
    ctls: dict[str, tuple[Host, EtcdCtl]] = {}
    attempts: list[str] = []
    for host in candidates:
        tools = found[host.name]
        if isinstance(tools, BaseException):
            raise tools
        if tools.etcdctl is None:
            attempts.append(f"{host.name}: no etcdctl (`k8sboot up` installs it)")
            continue
        ctls[host.name] = (host, ctl_on(ctx, host, spec_endpoints, tools))
    if not ctls:
        view.errors += attempts
        return view
    first = next(iter(ctls.values()))
    view.runner, view.ctl = first
    # No question waits for another: with no member answering, the command waits one
    # answer timeout, not one per host and per member.
    with ThreadPoolExecutor(max_workers=len(ctls) + 2) as pool:
        member_lists = {name: pool.submit(ctl.members) for name, (_, ctl) in ctls.items()}
        asked = _ask_states(pool, first[1], spec_endpoints) if statuses else None
        for name, answer in member_lists.items():
            try:
                view.members = answer.result()
            except K8sbootError as error:
                attempts.append(str(error))
                continue
            view.runner, view.ctl = ctls[name]
            break
        states = (asked[0].result(), asked[1].result()) if asked else ([], [])
    view.tools = view.ctl.tools
    if not view.answers:
        view.errors += attempts
    if not statuses:
        return view
    others = [
        url
        for member in view.members
        for url in member.client_urls[:1]
        if url not in spec_endpoints
    ]
    if view.runner is not first[0]:
        # The first host could not ask (its certificates, its network): its answers are not
        # the members'.
        states = _states(view.ctl, spec_endpoints + others)
    elif others:
        more = _states(view.ctl, others)
        states = (states[0] + more[0], states[1] + more[1])
    for status in states[0]:
        view.statuses[status.member_id] = status
    for health in states[1]:
        view.health[health.endpoint] = health
    if view.answers:
        try:
            view.alarms = view.ctl.alarms()
        except MachineError as error:
            view.errors.append(str(error))
    view.quota = configured_quota(ctx, view.runner)
    return view


def _ask_states(
    pool: ThreadPoolExecutor, ctl: EtcdCtl, endpoints: list[str]
) -> tuple[Future[list[EndpointStatus]], Future[list[EndpointHealth]]]:
    return pool.submit(ctl.status, endpoints), pool.submit(ctl.health, endpoints)


def _states(ctl: EtcdCtl, endpoints: list[str]) -> States:
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses, healths = _ask_states(pool, ctl, endpoints)
        return statuses.result(), healths.result()


def configured_quota(ctx: Context, host: Host | None) -> int:
    """--quota-backend-bytes from the etcd manifest (stacked) or k8sboot's environment file
    (external) on `host`, else etcd's default."""
    if host is None:
        return topology.DEFAULT_QUOTA
    where = topology.EXTERNAL_ENV if topology.external(ctx.cluster) else ETCD_MANIFEST
    result = ctx.view[host.name].ask(
        f"grep -ho -e 'quota-backend-bytes=[0-9]*' -e 'QUOTA_BACKEND_BYTES=\"*[0-9]*' {where} "
        "2>/dev/null | tail -n 1",
        check=False,
        shown="etcd quota",
    )
    digits = "".join(c for c in result.stdout.split("=")[-1] if c.isdigit())
    return int(digits) if digits else topology.DEFAULT_QUOTA


def host_for(ctx: Context, member: Member) -> Host | None:
    """The spec host of a member: the one whose peer URL it lists."""
    for host in topology.members(ctx.cluster):
        if member_by_peer_url([member], host.ip) is not None:
            return host
    return None
