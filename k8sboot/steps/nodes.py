"""Node maintenance steps: cordon, drain (with a pre-check of what would block it), and
the removal of a node: safety checks, drain, etcd member, kubeadm reset, Node object."""

from __future__ import annotations

from dataclasses import dataclass

from k8sboot.actions import Action, RunCommands
from k8sboot.errors import MachineError, UnsafeError, UserError
from k8sboot.etcd.client import STACKED_TLS, EtcdCtl, Member, client_url, find_member
from k8sboot.facts import NodeStatus
from k8sboot.nodes import observe, removed
from k8sboot.nodes.actions import Cordon, DeleteNode, Drain, RecordRemoval, RemoveEtcdMember
from k8sboot.nodes.pods import (
    OVERRIDE,
    Blocker,
    blockers,
    evictable,
    overridable,
)
from k8sboot.nodes.quorum import removal_refusal
from k8sboot.spec import Host
from k8sboot.steps.base import Context, Step
from k8sboot.steps.reset import cleanup, leftovers

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
STOP_KUBELET = "if systemctl cat kubelet.service >/dev/null 2>&1; then systemctl stop kubelet; fi"


@dataclass(frozen=True)
class Target:
    """The node acted on, as the spec, the API and this run's probes know it."""

    name: str
    host: Host | None  # None: registered in the API but no longer in the cluster file
    node: NodeStatus | None  # None: not registered (never joined, or already deleted)
    reachable: bool
    unreachable_reason: str
    control_plane: bool

    @property
    def ip(self) -> str | None:
        if self.host is not None:
            return self.host.ip
        return self.node.internal_ip if self.node else None


def resolve(ctx: Context, name: str) -> Target:
    """The node called `name`, or a usage error listing the nodes there are. Refused when
    the API could not be asked: whether the node is registered is then unknown, and
    acting on a guess would report work that was never done."""
    if not ctx.initialised:  # no control plane answered with the Nodes
        problems = [
            str(ctx.facts.errors[h.name])
            for h in ctx.cluster.control_planes
            if h.name in ctx.facts.errors
        ]
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise MachineError(
            f"cannot act on {name}: no control plane answered for the API{detail}; "
            "nothing was changed"
        )
    if not ctx.api.answers:
        raise ctx.api.needed(f"cannot act on {name} (nothing was changed)")
    spec_names = [h.name for h in ctx.cluster.kube_nodes]
    known = list(dict.fromkeys([*spec_names, *sorted(ctx.nodes)]))
    if name not in known:
        raise UserError(
            f"no node named {name!r} in the cluster file or the cluster; known nodes: "
            f"{', '.join(known) or 'none'}"
        )
    host = ctx.cluster.host(name)
    node = ctx.nodes.get(name)
    error = ctx.facts.errors.get(name)
    return Target(
        name=name,
        host=host,
        node=node,
        reachable=host is not None and name in ctx.facts.hosts,
        unreachable_reason=str(error) if error else "not in the cluster file",
        control_plane=bool(
            (host is not None and host.has("control-plane"))
            or (node is not None and CONTROL_PLANE_LABEL in node.labels)
        ),
    )


def api_host(ctx: Context, exclude: str | None = None) -> Host:
    """A reachable, initialised control plane other than `exclude` to act through."""
    for host in ctx.cluster.control_planes:
        if (
            host.name != exclude
            and host.name in ctx.facts.hosts
            and ctx.facts[host.name].initialised_control_plane
        ):
            return host
    besides = f" besides {exclude}" if exclude else ""
    raise MachineError(f"no reachable, initialised control plane{besides} to reach the API through")


def registered(target: Target) -> NodeStatus:
    if target.node is None:
        raise UserError(f"{target.name} has no Node object in the cluster (it has not joined)")
    return target.node


class CordonNode(Step):
    def __init__(self, name: str, unschedulable: bool = True):
        self.name = name
        self.unschedulable = unschedulable
        self.title = f"{'cordon' if unschedulable else 'uncordon'} {name}"

    def plan(self, ctx: Context) -> list[Action]:
        node = registered(resolve(ctx, self.name))
        if node.unschedulable == self.unschedulable:
            return []
        api = api_host(ctx)
        return [Cordon(api.name, self.name, self.unschedulable, observe.api_server(api.ip))]


@dataclass(frozen=True)
class DrainOptions:
    timeout: float = 600
    delete_emptydir_data: bool = False
    force: bool = False


class DrainNode(Step):
    """Cordon and evict. Before that, the pods a drain could not move or would wait for
    are listed, and the drain is refused unless the options override them."""

    def __init__(self, name: str, options: DrainOptions, for_removal: bool = False):
        self.name = name
        self.options = options
        self.for_removal = for_removal
        self.title = f"drain {name}"

    def plan(self, ctx: Context) -> list[Action]:
        target = resolve(ctx, self.name)
        if self.for_removal and target.node is None:
            return []
        node = registered(target)
        # A kubelet that is gone never confirms that its pods stopped: evict them (budgets
        # still apply, controllers replace them) without waiting for it.
        kubelet_gone = not node.ready or (self.for_removal and not target.reachable)
        api = api_host(ctx, exclude=self.name if self.for_removal else None)
        server = observe.api_server(api.ip)
        connection = ctx.view[api.name]
        pods = observe.pods_on(connection, self.name, server)
        found = blockers(
            pods, observe.budgets(connection, server), self.name, self.options.delete_emptydir_data
        )
        refused = overridable(
            found, self.options.force, self.options.delete_emptydir_data, self.for_removal
        )
        if refused:
            raise UnsafeError(refusal(self.name, refused, self.for_removal))
        if found:
            ctx.notes.append(f"draining {self.name} despite {grouped(found)} (--force)")
        if node.unschedulable and not [p for p in evictable(pods, self.name)]:
            return []  # cordoned and empty: drained
        return [
            Drain(
                api.name,
                self.name,
                self.options.timeout,
                self.options.delete_emptydir_data,
                self.options.force,
                server,
                keep_going=self.for_removal and self.options.force,
                skip_wait_for_delete=kubelet_gone,
            )
        ]


def grouped(found: list[Blocker]) -> str:
    """`reason: pod, pod; reason: pod`: one budget blocking many pods is said once."""
    pods: dict[str, list[str]] = {}
    for blocker in found:
        pods.setdefault(blocker.detail, []).append(blocker.pod)
    return "; ".join(f"{detail}: {', '.join(names)}" for detail, names in pods.items())


def refusal(node: str, found: list[Blocker], for_removal: bool) -> str:
    what = "removal" if for_removal else "drain"
    kinds = list(dict.fromkeys(b.kind for b in found))
    hints = "; ".join(OVERRIDE[k] for k in kinds)
    return f"{what} of {node} refused: a drain would be blocked by {grouped(found)} ({hints})"


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
        target = resolve(ctx, self.name)
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
        target = resolve(ctx, self.name)
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
        target = resolve(ctx, self.name)
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
        target = resolve(ctx, self.name)
        actions: list[Action] = []
        if target.node is not None:
            api = api_host(ctx, exclude=self.name)
            actions.append(DeleteNode(api.name, self.name, observe.api_server(api.ip)))
        if target.host is not None:
            if self.name not in removed.load(ctx.state):
                actions.append(RecordRemoval(self.name, target.host.address))
            ctx.notes.append(
                f"{self.name} is out of the cluster: drop it from the cluster file's hosts "
                "(with --vagrant: destroy its machine); until then `k8sboot up` leaves it out"
            )
        return actions
