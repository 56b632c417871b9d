"""etcdctl's JSON (as etcd 3.4.23 printed it) parsed into members, status and health."""

from __future__ import annotations

from k8sboot.etcd.client import EtcdCtl, Member, find_member, parse_status

from .fakes import FakeConnection

MEMBERS = {
    "header": {"cluster_id": 15118495548433857066, "member_id": 13668033151171901709},
    "members": [
        {
            "ID": 13668033151171901709,
            "name": "cp1",
            "peerURLs": ["https://10.0.0.11:2380"],
            "clientURLs": ["https://10.0.0.11:2379"],
        },
        {"ID": 1234, "name": "cp2", "peerURLs": ["https://10.0.0.12:2380"], "isLearner": True},
        {"ID": 99, "name": "", "peerURLs": ["https://10.0.0.111:2380"]},
    ],
}
STATUS = [
    {
        "Endpoint": "https://10.0.0.11:2379",
        "Status": {
            "header": {
                "cluster_id": 1,
                "member_id": 13668033151171901709,
                "revision": 2,
                "raft_term": 2,
            },
            "version": "3.4.23",
            "dbSize": 20480,
            "leader": 13668033151171901709,
            "raftIndex": 5,
            "raftTerm": 2,
            "raftAppliedIndex": 5,
            "dbSizeInUse": 16384,
        },
    }
]


def test_members_are_parsed_and_removed_by_hex_id() -> None:
    connection = FakeConnection("cp1", {"member list": MEMBERS, "member remove": {}})
    ctl = EtcdCtl(connection, EtcdCtlTLS, ["https://10.0.0.11:2379"])  # type: ignore[arg-type]
    members = ctl.members()
    assert [(m.name, m.hex_id, m.learner) for m in members] == [
        ("cp1", "bdae9bbc11dd390d", False),
        ("cp2", "4d2", True),
        ("", "63", False),
    ]
    ctl.remove_member(members[1])
    assert "member remove 4d2 " in connection.ran[-1]
    assert "--cacert=/ca --cert=/c --key=/k" in connection.ran[-1]


def test_members_match_by_exact_peer_url_never_a_prefix() -> None:
    members = [
        Member(99, "", ("https://10.0.0.111:2380",), (), False),
        Member(1, "cp1", ("https://10.0.0.11:2380",), (), False),
    ]
    assert find_member(members, "cp1", "10.0.0.11").id == 1
    assert find_member(members, "cp9", "10.0.0.1") is None


def test_status_knows_the_leader_and_sizes() -> None:
    status = parse_status(STATUS[0])
    assert (
        status.member_id == status.leader_id
        and status.db_size == 20480
        and status.db_size_in_use == 16384
    )
    assert (status.version, status.revision, status.raft_index) == ("3.4.23", 2, 5)


class EtcdCtlTLS:
    cacert, cert, key = "/ca", "/c", "/k"
