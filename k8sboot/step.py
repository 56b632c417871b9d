"""Planning: the Context steps see (observed state, a read-only view of the hosts)
and the Step every feature's steps derive from."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from k8sboot.actions import Action
from k8sboot.facts import ApiAnswer, Facts, HostFacts, NodeStatus, Wanted
from k8sboot.render import RenderedFile
from k8sboot.runlog import RunLog
from k8sboot.spec import Cluster, Host
from k8sboot.state import StateDir
from k8sboot.transport import ReadOnlyHosts


@dataclass
class Context:
    """Desired state (the spec), observed state (facts) and a read-only view of the hosts
    to look further with. Planning cannot change a machine: only the executor holds the
    transport that writes."""

    cluster: Cluster
    state: StateDir
    view: ReadOnlyHosts
    log: RunLog
    facts: Facts
    nodes: dict[str, NodeStatus] = field(default_factory=dict)  # registered in the API
    # Whether the API answered: when it does not, `nodes` is unknown (not empty) and
    # `init_finished` stays True (an unknown is never a reason to redo kubeadm init).
    api: ApiAnswer = field(default_factory=ApiAnswer)
    notes: list[str] = field(default_factory=list)  # told to the user at the end
    # False when the API answers but lacks what kubeadm init uploads late: the init on
    # the first control plane stopped half-way, and must be reset and run again.
    init_finished: bool = True
    wait_timeout: float = 600

    def host_facts(self, host: Host) -> HostFacts:
        return self.facts[host.name]

    @property
    def api_host(self) -> Host:
        """A control plane that serves the API: the first initialised one, or (before
        init) the one that kubeadm init runs on."""
        for host in self.cluster.control_planes:
            if host.name in self.facts.hosts and self.facts[host.name].initialised_control_plane:
                return host
        return self.cluster.first_control_plane

    @property
    def initialised(self) -> bool:
        return self.init_finished and any(
            self.facts[h.name].initialised_control_plane
            for h in self.cluster.control_planes
            if h.name in self.facts.hosts
        )

    def joined(self, host: Host) -> bool:
        """kubeadm configured the host and its Node is registered."""
        return self.host_facts(host).kubeadm_configured and host.name in self.nodes


class Step(ABC):
    title: str
    # Its actions each touch their own host and none needs another's result: they run at
    # the same time.
    hosts_apart: bool = False
    # With hosts_apart, how many run at the same time at most (None: all of them).
    most_at_once: int | None = None

    def at_once(self, actions: int) -> int:
        if not self.hosts_apart:
            return 1
        return min(self.most_at_once or actions, actions)

    def wants(self, cluster: Cluster) -> Wanted:
        """What this step reads from the probes beyond their defaults (files, packages,
        paths that must exist): the pipeline probes its workflow's union once."""
        return Wanted()

    @abstractmethod
    def plan(self, ctx: Context) -> list[Action]:
        """The actions that would bring this step's part of the cluster to the desired
        state; an empty plan means converged."""


def sha256(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def changed(ctx: Context, host: Host, files: list[RenderedFile]) -> tuple[RenderedFile, ...]:
    found = ctx.host_facts(host)
    return tuple(f for f in files if found.file_hash(str(f.path)) != sha256(f.content))
