"""Node maintenance: cordon, drain, etcd member removal, Node deletion, removal records."""

from __future__ import annotations

import shlex
import time

from k8sboot.errors import MachineError
from k8sboot.etcd.client import STACKED_TLS, EtcdCtl, Member, client_url
from k8sboot.executor.core import Executor, Outcome, handles
from k8sboot.nodes import observe, removed
from k8sboot.nodes.actions import Cordon, DeleteNode, Drain, RecordRemoval, RemoveEtcdMember
from k8sboot.nodes.pods import why_left

DRAIN_GRACE = 120  # seconds beyond kubectl's own --timeout before the SSH command gives up
MEMBER_CHANGE_RETRY = 60  # etcd refuses membership changes for a while after a restart
SETTLE = 30  # seconds for the member list and health to show the change


@handles(Cordon)
def cordon(executor: Executor, action: Cordon) -> Outcome:
    verb = "cordon" if action.unschedulable else "uncordon"
    executor.progress(action.host, f"kubectl {verb} {action.node}")
    executor.transport[action.host].run(
        f"{observe.kubectl(action.server)} {verb} {shlex.quote(action.node)}", timeout=120
    )
    return Outcome((action.node,))


@handles(Drain)
def drain(executor: Executor, action: Drain) -> Outcome:
    connection = executor.transport[action.host]
    flags = [f"--ignore-daemonsets --timeout={action.timeout:.0f}s"]
    if action.delete_emptydir_data:
        flags.append("--delete-emptydir-data")
    if action.force:
        flags.append("--force")
    if action.skip_wait_for_delete:
        flags.append("--skip-wait-for-delete-timeout=1")
    command = f"{observe.kubectl(action.server)} drain {shlex.quote(action.node)} {' '.join(flags)}"
    executor.progress(action.host, f"kubectl drain {action.node} (up to {action.timeout:.0f}s)")
    result = connection.run(
        command,
        timeout=action.timeout + DRAIN_GRACE,
        check=False,
        shown=f"kubectl drain {action.node}",
    )
    if result.ok:
        return Outcome((action.node,))
    left = why_left(
        observe.pods_on(connection, action.node, action.server),
        observe.budgets(connection, action.server),
        action.node,
    )
    output = f"{result.stdout}\n{result.stderr}"
    timed_out = "global timeout reached" in output or "timed out" in output
    last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
    message = (
        f"drain of {action.node} did not finish"
        + (f" within {action.timeout:.0f}s" if timed_out else "")
        + (f"; pods left: {'; '.join(left)}" if left else f": {last[0]}")
    )
    if action.keep_going:
        executor.ctx.notes.append(f"warning: {message}; removing it anyway (--force)")
        return Outcome((action.node,))
    raise MachineError(message)


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
    return Outcome(())
