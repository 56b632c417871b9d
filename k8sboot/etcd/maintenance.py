"""etcd maintenance: defragmenting members one at a time, and disarming alarms."""

from __future__ import annotations

import time
from dataclasses import dataclass

from k8sboot.actions import Action, OnHost
from k8sboot.errors import MachineError, UnsafeError
from k8sboot.etcd import topology
from k8sboot.etcd.backup import ctl_for
from k8sboot.etcd.observe import host_for, observe
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.step import Context, Step


class EtcdDefrag(Step):
    title = "etcd defrag"

    def __init__(self, pause: float):
        self.pause = pause

    def plan(self, ctx: Context) -> list[Action]:
        view = observe(ctx)
        if not view.healthy or view.runner is None:
            raise UnsafeError(
                "refusing to defragment while etcd is unhealthy: " + "; ".join(view.problems())
            )
        followers, leader = [], []
        for member in view.members:
            if member.learner:
                continue
            host = host_for(ctx, member)
            endpoint = view.endpoint_of(member) or (topology.endpoint(host) if host else "")
            role = "leader" if member.id == view.leader_id else "follower"
            (leader if role == "leader" else followers).append((member, endpoint, role))
        ordered = followers + leader
        return [
            Defragment(
                view.runner.name,
                endpoint,
                member.name or member.hex_id,
                role,
                self.pause if index < len(ordered) - 1 else 0.0,
            )
            for index, (member, endpoint, role) in enumerate(ordered)
        ]


class EtcdDisarm(Step):
    title = "etcd alarms"

    def plan(self, ctx: Context) -> list[Action]:
        view = observe(ctx)
        if not view.answers or view.runner is None:
            raise MachineError("etcd does not answer: " + "; ".join(view.problems()))
        if not view.alarms:
            return []
        alarms = tuple(f"{a.alarm} on {a.member_id:x}" for a in view.alarms)
        return [DisarmAlarms(view.runner.name, alarms)]


@dataclass(frozen=True)
class Defragment(OnHost):
    host: str  # where etcdctl runs
    endpoint: str
    member: str
    role: str  # follower or leader
    pause: float  # seconds to wait afterwards, before the next member

    def describe(self) -> str:
        return f"defragment {self.role} {self.member} ({self.endpoint})"


@dataclass(frozen=True)
class DisarmAlarms(OnHost):
    alarms: tuple[str, ...]

    def describe(self) -> str:
        return f"disarm alarms: {', '.join(self.alarms)}"


@handles(Defragment)
def defragment(executor: Executor, action: Defragment) -> Outcome:
    ctx = executor.ctx
    endpoints = [topology.endpoint(h) for h in topology.members(ctx.cluster)]
    ctl = ctl_for(executor, action.host, endpoints)
    sick = [h.endpoint for h in ctl.health(endpoints) if not h.healthy]
    if sick:  # a member went away since the plan: stop rather than add load
        raise UnsafeError(
            f"stopped before defragmenting {action.member}: {', '.join(sick)} unhealthy"
        )
    before = ctl.status([action.endpoint])
    executor.progress(action.host, f"defragment {action.member}")
    ctl.defragment(action.endpoint)
    after = ctl.status([action.endpoint])
    notes: tuple[str, ...] = ()
    if before and after:
        size = f"{before[0].db_size / 2**20:.1f} MiB -> {after[0].db_size / 2**20:.1f} MiB"
        notes = (f"{action.member}: {size}",)
    if action.pause:
        executor.progress(action.host, f"pause {action.pause:.0f}s before the next member")
        time.sleep(action.pause)
    # The member is what changed, not the host etcdctl ran on: the summary names each.
    return Outcome((action.member,), notes=notes)


@handles(DisarmAlarms)
def disarm(executor: Executor, action: DisarmAlarms) -> Outcome:
    ctl = ctl_for(
        executor,
        action.host,
        [topology.endpoint(h) for h in topology.members(executor.ctx.cluster)],
    )
    ctl.disarm()
    left = ctl.alarms()
    if left:
        raise MachineError(
            "alarms raised again after disarming: "
            + ", ".join(f"{a.alarm} on {a.member_id:x}" for a in left)
            + " (NOSPACE: the database is still over its quota; compact and defragment first)"
        )
    return Outcome((action.host,))
