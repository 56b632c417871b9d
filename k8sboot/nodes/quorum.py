"""etcd quorum arithmetic for removing a member, one member at a time.

A membership change is a raft proposal of the current configuration: it needs a majority
of the current voting members to commit, and the member on its way out cannot be counted
on (it is dead, or it shuts down as soon as it learns it was removed). So a member may go
only when the healthy voting members other than it are a majority of the current voters:
3 -> 2 is fine, 2 -> 1 is refused (the survivor alone is not a majority of 2), and a dead
member of 3 can go while the other 2 are healthy. Learners do not vote.
"""

from __future__ import annotations

from k8sboot.etcd.client import Member


def quorum(voters: int) -> int:
    return voters // 2 + 1


def removal_refusal(
    node: str, members: list[Member], healthy: set[int], target: Member | None
) -> str | None:
    """Why removing `target` (the etcd member of `node`) would be unsafe, or None."""
    if target is None or target.learner:
        return None
    voters = [m for m in members if not m.learner]
    if len(voters) <= 1:
        return f"{node} runs the last etcd member; removing it would destroy the cluster's data"
    others = [m for m in voters if m.id != target.id and m.id in healthy]
    needed = quorum(len(voters))
    if len(others) < needed:
        down = [m.name or m.hex_id for m in voters if m.id != target.id and m.id not in healthy]
        also = f" ({', '.join(down)} unhealthy)" if down else ""
        return (
            f"removing {node} would leave etcd without quorum: {len(others)} healthy member(s) "
            f"besides it{also}, but a change to the {len(voters)}-member cluster needs "
            f"{needed}; add a control plane first (membership changes one at a time)"
        )
    return None
