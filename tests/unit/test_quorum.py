"""etcd quorum arithmetic for removing members one at a time."""

from __future__ import annotations

import pytest

from k8sboot.etcd.client import Member
from k8sboot.nodes.quorum import quorum, removal_refusal


def members(n: int, learners: int = 0) -> list[Member]:
    return [
        Member(i, f"cp{i}", (f"https://10.0.0.{10 + i}:2380",), (), learner=i > n - learners)
        for i in range(1, n + 1)
    ]


@pytest.mark.parametrize(("voters", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_quorum(voters: int, needed: int) -> None:
    assert quorum(voters) == needed


def test_three_to_two_is_allowed() -> None:
    found = members(3)
    assert removal_refusal("cp3", found, {1, 2, 3}, found[2]) is None


def test_two_to_one_is_refused() -> None:
    found = members(2)
    reason = removal_refusal("cp2", found, {1, 2}, found[1])
    assert reason is not None
    assert "without quorum" in reason and "1 healthy member(s) besides it" in reason
    assert "needs 2" in reason


def test_a_dead_member_of_three_can_go() -> None:
    found = members(3)
    assert removal_refusal("cp3", found, {1, 2}, found[2]) is None


def test_a_healthy_member_cannot_go_while_another_is_down() -> None:
    found = members(3)
    reason = removal_refusal("cp3", found, {1, 3}, found[2])
    assert reason is not None and "(cp2 unhealthy)" in reason


def test_the_last_member_never_goes() -> None:
    found = members(1)
    assert "last etcd member" in (removal_refusal("cp1", found, {1}, found[0]) or "")


def test_learners_do_not_count_and_may_always_go() -> None:
    found = members(3, learners=1)  # cp3 is a learner: 2 voters
    assert removal_refusal("cp3", found, {1, 2}, found[2]) is None
    assert removal_refusal("cp2", found, {1, 2, 3}, found[1]) is not None  # 2 voters -> 1


def test_no_member_no_refusal() -> None:
    assert removal_refusal("w1", members(3), {1, 2, 3}, None) is None


def test_five_members_tolerate_two_down_but_not_a_third_removal() -> None:
    found = members(5)
    assert removal_refusal("cp5", found, {1, 2, 3}, found[4]) is None  # 3 of 5 others healthy
    assert removal_refusal("cp5", found, {1, 2, 5}, found[4]) is not None  # 2 < 3
