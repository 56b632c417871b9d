"""Actions: small frozen records of one change a step wants made.

Steps return them as their plan; the executor is the only code that carries them out.
Each describes itself for `k8sboot plan`, and no description ever contains a secret
(secrets are created at execution time, not planned).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import PurePosixPath

from k8sboot.render import RenderedFile


@dataclass(frozen=True)
class Action(ABC):
    @property
    @abstractmethod
    def hosts(self) -> tuple[str, ...]: ...

    @abstractmethod
    def describe(self) -> str: ...


@dataclass(frozen=True)
class OnHost(Action):
    """An action carried out on one host (or through it, for a cluster-wide question)."""

    host: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host,)


@dataclass(frozen=True)
class Converge(Action):
    """Run Ansible roles: each host gets only the roles its probe found drifted."""

    roles: tuple[tuple[str, tuple[str, ...]], ...]  # (host, roles)
    reasons: tuple[tuple[str, str, str], ...] = ()  # (host, role, why it must run)
    host_vars: tuple[tuple[str, str], ...] = ()  # (host, JSON of its variables; no secrets)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(host for host, _ in self.roles)

    def describe(self) -> str:
        why = {(host, role): reason for host, role, reason in self.reasons}
        parts = [
            f"{host}: "
            + ", ".join(f"{r} ({why[host, r]})" if (host, r) in why else r for r in roles)
            for host, roles in self.roles
        ]
        return "Ansible roles " + "; ".join(parts)


@dataclass(frozen=True)
class WriteFiles(OnHost):
    """Replace files on a host; restart a service afterwards when any of them changed."""

    files: tuple[RenderedFile, ...]
    restart: str | None = None

    def describe(self) -> str:
        if not self.files:
            return f"restart {self.restart} (it has not read its configuration yet)"
        paths = ", ".join(str(f.path) for f in self.files)
        then = f", then restart {self.restart}" if self.restart else ""
        return f"write {paths}{then}"


@dataclass(frozen=True)
class KubeadmInit(OnHost):
    reset_first: bool = False  # a previous init stopped before the control plane answered
    # A previous init stopped after the control plane answered: run its remaining phases
    # (upload-config onwards) instead of resetting a running control plane.
    resume: bool = False
    # kube-vip's static pod, written after any reset (which empties the manifests
    # directory) and before init, which waits for the virtual IP kube-vip brings up.
    kube_vip: RenderedFile | None = None

    def describe(self) -> str:
        first = (
            "kubeadm reset (an earlier init stopped half-way), then " if self.reset_first else ""
        )
        vip = f"write {self.kube_vip.path} (for init), then " if self.kube_vip else ""
        if self.resume:
            return (
                f"{vip}kubeadm init --upload-certs from wait-control-plane on (an earlier "
                "init stopped after the control plane came up)"
            )
        return f"{first}{vip}kubeadm init --upload-certs"


@dataclass(frozen=True)
class KubeadmJoin(Action):
    """Join hosts: control planes one at a time, each with a certificate key uploaded and
    a token created right before; workers in parallel with one short-lived token."""

    joining: tuple[str, ...]
    control_plane: bool
    reset_first: tuple[str, ...] = ()  # an earlier join of these stopped half-way

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.joining

    def describe(self) -> str:
        kind = "control plane" if self.control_plane else "worker"
        reset = (
            f" (kubeadm reset first on {', '.join(self.reset_first)})" if self.reset_first else ""
        )
        return f"kubeadm join as {kind}: {', '.join(self.joining)}{reset}"


@dataclass(frozen=True)
class Fetched:
    """A release file k8sboot fetches where it runs (never on the hosts, which may have no
    way out), checks against its pinned sha256 and puts on a host."""

    url: str
    sha256: str
    path: PurePosixPath


@dataclass(frozen=True)
class ApplyManifest(OnHost):
    file: RenderedFile
    what: str
    stamp: str  # recorded on the host once applied, so that a re-run can skip it
    # An operator's release manifest applied first (server-side: its CRDs are too large
    # for the annotation client-side apply keeps), and the CRDs to wait for.
    operator: Fetched | None = None
    crds: tuple[str, ...] = ()

    def describe(self) -> str:
        first = (
            f"kubectl apply --server-side {self.operator.url} (sha256 checked), "
            if self.operator
            else ""
        )
        return f"{first}kubectl apply {self.what} ({self.file.path})"


@dataclass(frozen=True)
class WaitNodesReady(Action):
    host: str  # the control plane to ask
    nodes: tuple[str, ...]
    timeout: float

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host,)  # it only reads, through this control plane

    def describe(self) -> str:
        return f"wait up to {self.timeout:.0f}s for nodes Ready: {', '.join(self.nodes)}"


@dataclass(frozen=True)
class WaitApiServer(OnHost):
    """Wait until the API servers answer through the cluster's endpoint (after kube-vip
    restarted, the virtual IP is dark for a moment)."""

    host: str  # the control plane to ask from
    endpoint: str
    timeout: float = 120

    def describe(self) -> str:
        return f"wait up to {self.timeout:.0f}s for https://{self.endpoint}/readyz"


@dataclass(frozen=True)
class FetchKubeconfig(OnHost):
    server: str

    def describe(self) -> str:
        return f"fetch admin kubeconfig (server https://{self.server}) into the state directory"


@dataclass(frozen=True)
class RunCommands(Action):
    """Plain commands on hosts, in parallel; used by reset and maintenance."""

    commands: tuple[tuple[str, str], ...]  # (host, command)
    title: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(host for host, _ in self.commands))

    def describe(self) -> str:
        return f"{self.title} on {', '.join(self.hosts)}"
