"""Defragmentation and alarms."""

from __future__ import annotations

import time

from k8sboot.errors import MachineError, UnsafeError
from k8sboot.etcd import topology
from k8sboot.etcd.actions import Defragment, DisarmAlarms
from k8sboot.executor.core import Executor, Outcome, handles
from k8sboot.executor.etcd_backup import ctl_for


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
    if before and after:
        ctx.notes.append(
            f"{action.member}: {before[0].db_size / 2**20:.1f} MiB -> "
            f"{after[0].db_size / 2**20:.1f} MiB"
        )
    if action.pause:
        executor.progress(action.host, f"pause {action.pause:.0f}s before the next member")
        time.sleep(action.pause)
    return Outcome((action.host,))


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
