"""`node cordon` and `node drain`: the node resolved from the cluster file and the
API, its pods checked against kubectl's drain filters and PodDisruptionBudgets, evicted."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from k8sboot.actions import Action, OnHost
from k8sboot.errors import MachineError, UnsafeError, UserError
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import NodeStatus
from k8sboot.nodes import observe
from k8sboot.nodes.pods import (
    OVERRIDE,
    Blocker,
    blockers,
    evictable,
    overridable,
    why_left,
)
from k8sboot.spec import Host
from k8sboot.step import Context, Step

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


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


def resolve(ctx: Context, name: str, doing: str) -> Target:
    """The node called `name`, or a usage error listing the nodes there are. Refused, with
    what `doing` (cordon, drain, remove) cannot do, when the API could not be asked or did
    not answer: whether the node is registered is then unknown, and acting on a guess (or
    saying it has not joined) would report what nobody observed."""
    if not ctx.initialised:  # no control plane answered with the Nodes
        problems = [
            str(ctx.facts.errors[h.name])
            for h in ctx.cluster.control_planes
            if h.name in ctx.facts.errors
        ]
        why = (
            f"no control plane answered for the API ({'; '.join(problems)})"
            if problems
            else "no control plane is initialised, so there is no API to ask (`k8sboot up` "
            "brings the cluster up)"
        )
        raise MachineError(f"cannot {doing} {name}: {why}; nothing was changed")
    if not ctx.api.answers:
        raise ctx.api.needed(f"cannot {doing} {name} (nothing was changed)")
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


def registered(target: Target, doing: str) -> NodeStatus:
    """The target's Node. Its absence is a verdict only because resolve() refused to go on
    unless the API answered."""
    if target.node is None:
        raise UserError(
            f"cannot {doing} {target.name}: the API has no Node {target.name} (it has not "
            "joined the cluster, or was deleted)"
        )
    return target.node


class CordonNode(Step):
    def __init__(self, name: str, unschedulable: bool = True):
        self.name = name
        self.unschedulable = unschedulable
        self.doing = "cordon" if unschedulable else "uncordon"
        self.title = f"{self.doing} {name}"

    def plan(self, ctx: Context) -> list[Action]:
        node = registered(resolve(ctx, self.name, self.doing), self.doing)
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
        doing = "remove" if self.for_removal else "drain"
        target = resolve(ctx, self.name, doing)
        if self.for_removal and target.node is None:
            return []
        node = registered(target, doing)
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


DRAIN_GRACE = 120  # seconds beyond kubectl's own --timeout before the SSH command gives up


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
        anyway = f"warning: {message}; removing it anyway (--force)"
        return Outcome((action.node,), notes=(anyway,))
    raise MachineError(message)
