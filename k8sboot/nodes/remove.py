"""`node remove`: the safety checks (quorum, last control plane), the drain, the
etcd member, kubeadm reset on the host, the Node object, and the record that keeps it out."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from k8sboot.actions import Action, OnHost, RunCommands
from k8sboot.cluster.reset import cleanup, leftovers
from k8sboot.errors import MachineError, UnsafeError
from k8sboot.etcd.client import STACKED_TLS, EtcdCtl, Member, client_url, find_member
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.nodes import observe, removed
from k8sboot.nodes.drain import CONTROL_PLANE_LABEL, Target, api_host, resolve
from k8sboot.nodes.quorum import removal_refusal
from k8sboot.spec import Host
from k8sboot.step import Context, Step

STOP_KUBELET = "if systemctl cat kubelet.service >/dev/null 2>&1; then systemctl stop kubelet; fi"


def etcd_through(ctx: Context, exclude: str) -> tuple[Host, EtcdCtl, list[Member]]:
    """An etcd client on a control plane other than `exclude` whose own member answers."""
    asked = {
        h.name: (h, EtcdCtl(ctx.view[h.name], STACKED_TLS, [client_url(h.ip)]))
        for h in ctx.cluster.control_planes
        if h.name != exclude
        and h.name in ctx.facts.hosts
        and ctx.facts[h.name].initialised_control_plane
    }
    # All asked at once: members that do not answer cost one wait, not one each.
    answers = ctx.view.each(asked, lambda c: asked[c.name][1].members())
    problems = []
    for name, answer in answers.items():
        if isinstance(answer, MachineError):
            problems.append(str(answer))
        elif isinstance(answer, BaseException):
            raise answer
        else:
            host, etcd = asked[name]
            return host, etcd, answer
    detail = f": {'; '.join(problems)}" if problems else ""
    raise MachineError(f"no healthy etcd member besides {exclude} to ask{detail}")


def healthy_members(etcd: EtcdCtl, members: list[Member]) -> set[int]:
    by_url = {m.client_urls[0]: m.id for m in members if m.client_urls}
    if not by_url:
        return set()
    return {
        by_url[h.endpoint] for h in etcd.health(list(by_url)) if h.healthy and h.endpoint in by_url
    }


def _stacked_member(ctx: Context, target: Target) -> bool:
    return target.control_plane and ctx.cluster.etcd.topology == "stacked"


class CheckRemoval(Step):
    """Refuse to remove the last control plane, or an etcd member whose removal would
    leave etcd without quorum."""

    def __init__(self, name: str):
        self.name = name
        self.title = f"check that {name} can go"

    def plan(self, ctx: Context) -> list[Action]:
        target = resolve(ctx, self.name, "remove")
        if not target.control_plane:
            return []
        others = [
            n.name
            for n in ctx.nodes.values()
            if n.name != self.name and CONTROL_PLANE_LABEL in n.labels
        ]
        if not others:
            raise UnsafeError(
                f"{self.name} is the last control plane; removing it would destroy the cluster "
                "(`k8sboot reset` does that on purpose)"
            )
        if _stacked_member(ctx, target):
            _, etcd, members = etcd_through(ctx, self.name)
            member = find_member(members, self.name, target.ip or "")
            reason = removal_refusal(self.name, members, healthy_members(etcd, members), member)
            if reason:
                raise UnsafeError(reason)
        return []


class RemoveFromEtcd(Step):
    def __init__(self, name: str):
        self.name = name
        self.title = f"remove {name}'s etcd member"

    def plan(self, ctx: Context) -> list[Action]:
        target = resolve(ctx, self.name, "remove")
        if not _stacked_member(ctx, target):
            return []
        via, etcd, members = etcd_through(ctx, self.name)
        member = find_member(members, self.name, target.ip or "")
        if member is None:
            return []  # not (or no longer) a member
        reason = removal_refusal(self.name, members, healthy_members(etcd, members), member)
        if reason:
            raise UnsafeError(reason)
        return [RemoveEtcdMember(via.name, self.name, member.id, member.peer_urls)]


class ResetRemovedHost(Step):
    """kubeadm reset and its leftovers on the node itself, when it can be reached."""

    def __init__(self, name: str):
        self.name = name
        self.title = f"kubeadm reset on {name}"

    def plan(self, ctx: Context) -> list[Action]:
        target = resolve(ctx, self.name, "remove")
        if not target.reachable:
            ctx.notes.append(
                f"warning: {self.name} could not be reached ({target.unreachable_reason}), so "
                "kubeadm reset did not run there; if it comes back, its kubelet registers it "
                f"again: run `k8sboot node remove {self.name} --yes` again then to wipe it"
            )
            return []
        found = ctx.host_facts(target.host)  # type: ignore[arg-type]
        if not leftovers(ctx.cluster, found) and not found.active("kubelet"):
            return []
        return [
            RunCommands(
                ((self.name, cleanup(ctx.cluster)), (self.name, STOP_KUBELET)),
                "kubeadm reset, CNI/iptables/IPVS cleanup, kubelet stopped",
            )
        ]


class DeleteNodeObject(Step):
    def __init__(self, name: str):
        self.name = name
        self.title = f"delete Node {name}"

    def plan(self, ctx: Context) -> list[Action]:
        target = resolve(ctx, self.name, "remove")
        actions: list[Action] = []
        if target.node is not None:
            api = api_host(ctx, exclude=self.name)
            actions.append(DeleteNode(api.name, self.name, observe.api_server(api.ip)))
        if target.host is not None and self.name not in removed.load(ctx.state):
            actions.append(RecordRemoval(self.name, target.host.address))
        return actions


@dataclass(frozen=True)
class RemoveEtcdMember(OnHost):
    host: str  # a control plane with a healthy etcd member to ask
    node: str
    member_id: int
    peer_urls: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"etcd member remove {self.member_id:x} ({self.node}, "
            f"{', '.join(self.peer_urls) or 'no peer URL'}) through {self.host}, "
            "then check the member list"
        )


@dataclass(frozen=True)
class DeleteNode(OnHost):
    node: str
    server: str | None = None

    def describe(self) -> str:
        return f"kubectl delete node {self.node}"


@dataclass(frozen=True)
class RecordRemoval(Action):
    """Remember in the state directory that `node` is out, so that `up` leaves it out."""

    node: str
    address: str | None

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.node,)  # nothing runs there: the record is on this machine

    def describe(self) -> str:
        return f"record {self.node} as removed in the state directory (`up` leaves it out)"


MEMBER_CHANGE_RETRY = 60  # etcd refuses membership changes for a while after a restart


SETTLE = 30  # seconds for the member list and health to show the change


@handles(RemoveEtcdMember)
def remove_member(executor: Executor, action: RemoveEtcdMember) -> Outcome:
    ctx = executor.ctx
    via = ctx.cluster.host(action.host)
    assert via is not None
    etcd = EtcdCtl(executor.transport[action.host], STACKED_TLS, [client_url(via.ip)])
    member = Member(action.member_id, action.node, action.peer_urls, (), False)
    executor.progress(action.host, f"etcd member remove {member.hex_id} ({action.node})")
    deadline = time.monotonic() + MEMBER_CHANGE_RETRY
    while True:
        try:
            etcd.remove_member(member)
            break
        except MachineError as error:
            if "not found" in str(error):
                break  # gone already (a previous run, or kubeadm reset)
            if time.monotonic() > deadline:
                raise
            executor.progress(action.host, f"etcd refuses the change for now: {error}")
            time.sleep(2)
    _check_members(executor, etcd, action)
    return Outcome((action.node,))


def _check_members(executor: Executor, etcd: EtcdCtl, action: RemoveEtcdMember) -> None:
    """The member is gone from the list, and every remaining member is healthy."""
    deadline = time.monotonic() + SETTLE
    while True:
        members = etcd.members()
        still = any(m.id == action.member_id for m in members)
        urls = [m.client_urls[0] for m in members if m.client_urls]
        sick = [h.endpoint for h in etcd.health(urls) if not h.healthy] if urls else []
        if not still and not sick:
            executor.progress(
                action.host,
                f"etcd members now: {', '.join(m.name or m.hex_id for m in members)}",
            )
            return
        if time.monotonic() > deadline:
            problem = (
                f"member {action.member_id:x} of {action.node} is still listed"
                if still
                else f"unhealthy after the change: {', '.join(sick)}"
            )
            raise MachineError(f"etcd member list check failed: {problem}")
        time.sleep(1)


@handles(DeleteNode)
def delete_node(executor: Executor, action: DeleteNode) -> Outcome:
    executor.progress(action.host, f"kubectl delete node {action.node}")
    executor.transport[action.host].run(
        f"{observe.kubectl(action.server)} delete node {shlex.quote(action.node)} "
        "--ignore-not-found",
        timeout=120,
    )
    return Outcome((action.node,))


@handles(RecordRemoval)
def record_removal(executor: Executor, action: RecordRemoval) -> Outcome:
    removed.record(executor.ctx.state, action.node, action.address)
    return Outcome(
        (),
        notes=(
            f"{action.node} is out of the cluster: drop it from the cluster file's hosts "
            "(with --vagrant: destroy its machine); until then `k8sboot up` leaves it out",
        ),
    )
