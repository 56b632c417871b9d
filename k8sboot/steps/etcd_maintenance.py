"""etcd maintenance: defragmentation one member at a time (followers first, the leader
last, refused while the cluster is unhealthy) and disarming alarms."""

from __future__ import annotations

from k8sboot.actions import Action
from k8sboot.errors import MachineError, UnsafeError
from k8sboot.etcd import topology
from k8sboot.etcd.actions import Defragment, DisarmAlarms
from k8sboot.etcd.observe import host_for, observe
from k8sboot.steps.base import Context, Step


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
