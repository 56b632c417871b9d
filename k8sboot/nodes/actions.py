"""Actions of node maintenance: cordon, drain, etcd member removal, Node deletion, the
removal record. `host` is always the control plane whose admin.conf (or etcd client
certificate) is used; the node acted on is named separately."""

from __future__ import annotations

from dataclasses import dataclass

from k8sboot.actions import Action, OnHost


@dataclass(frozen=True)
class Cordon(OnHost):
    node: str
    unschedulable: bool  # False: uncordon
    server: str | None = None

    def describe(self) -> str:
        return f"kubectl {'cordon' if self.unschedulable else 'uncordon'} {self.node}"


@dataclass(frozen=True)
class Drain(OnHost):
    node: str
    timeout: float
    delete_emptydir_data: bool = False
    force: bool = False  # kubectl's --force: also delete pods without a controller
    server: str | None = None  # talk to this API server rather than the endpoint
    keep_going: bool = False  # a failure is a warning (node remove --force)
    skip_wait_for_delete: bool = False  # its kubelet is gone: do not wait for it

    def describe(self) -> str:
        extra = "".join(
            [
                ", delete emptyDir data" if self.delete_emptydir_data else "",
                ", delete pods without a controller (--force)" if self.force else "",
                ", not waiting for its kubelet" if self.skip_wait_for_delete else "",
            ]
        )
        return (
            f"kubectl drain {self.node} (DaemonSet pods stay{extra}; timeout {self.timeout:.0f}s)"
        )


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
