"""`k8sboot upgrade`: Kubernetes upgraded the kubeadm way (its upgrade guide's order),
node by node, after an etcd backup, each node planned from what it runs:

1. checks first, before anything changes (versions, health, packages, skew, budgets);
2. an etcd backup into the catalogue, named as the way back;
3. external etcd installed by k8sboot moved to the release the target calls for, one
   member at a time;
4. the new kubeadm package (from the repository of the target minor) on every node at
   once: a command, run later node by node, so installing it changes nothing that runs;
5. the control planes one at a time, the first with `kubeadm upgrade apply`, the others
   with `kubeadm upgrade node`, each with etcd leadership and the virtual IP moved off it
   first, then drained, its kubelet and kubectl upgraded and restarted, uncordoned;
6. the workers the same with `kubeadm upgrade node`, one (or --max-unavailable) at a time;
7. kubeadm's plaintext etcd copies removed, the packages converged and held at the new
   version.

A run that stopped anywhere is finished by running it again: every node's remaining work
is read from the node (packages, static pod images, its Node), and the record in the state
directory keeps the backup's name and the nodes the upgrade cordoned.

`up` brings new hosts and new clusters to the cluster file's version and refuses to change
the version of a running one (KeepVersion): installing other packages everywhere at once,
with no `kubeadm upgrade`, would break the version-skew rules of a live cluster.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from k8sboot.actions import Action, OnHost, OnThisMachine, RunCommands
from k8sboot.cluster.kube_vip import WaitApiServer, kube_vip_manifest, stop_holding
from k8sboot.cluster.node_setup import (
    KEYRING_FILE,
    SOURCES_FILE,
    NodeSetup,
    fingerprint,
    package_vars,
)
from k8sboot.errors import MachineError, UnsafeError, UserError
from k8sboot.etcd import topology
from k8sboot.etcd.backup import snapshot_action
from k8sboot.etcd.client import EtcdCtl, member_by_peer_url
from k8sboot.etcd.external import START_TIMEOUT, wait_healthy
from k8sboot.etcd.install import InstallEtcd
from k8sboot.etcd.stores import open_store
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.facts import KUBECTL, HostFacts
from k8sboot.kubeadm_node import KUBEADM_TMP, MANIFESTS_DIR
from k8sboot.nodes import observe
from k8sboot.nodes.drain import Cordon, Drain, DrainOptions, api_host, refusal
from k8sboot.nodes.pods import blockers, overridable
from k8sboot.spec import Cluster, Host
from k8sboot.state import StateDir, write_private
from k8sboot.step import Context, Step, sha256
from k8sboot.transport import Askable, Connection

KUBE_NODE_PACKAGES = ("kubeadm", "kubelet")
PRE_UPGRADE = "pre-upgrade"  # the origin of the backup an upgrade takes first
# The static pods `kubeadm upgrade` moves to the new version (etcd moves with kubeadm's pin).
CONTROL_PLANE_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# kubeadm's plaintext copies of the etcd data directory, one per `upgrade apply|node` run
# (cmd/kubeadm/app/phases/upgrade/staticpods.go), which kubeadm never removes.
KUBEADM_ETCD_COPIES = f"{KUBEADM_TMP}/kubeadm-backup-etcd-*"
KUBEADM_TIMEOUT = 900
APT_TIMEOUT = 600
# The kubelet supports an API server up to three minors newer (version-skew-policy.md).
KUBELET_SKEW = 3

# What a node still needs, in the order the upgrade guide does it.
KUBEADM = "kubeadm"
APPLY = "kubeadm upgrade apply"
NODE = "kubeadm upgrade node"
DRAIN = "drain"
KUBELET = "kubelet"
UNCORDON = "uncordon"


def version_tuple(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split(".")[:3])
    return major, minor, patch


def installed(found: HostFacts, name: str) -> str | None:
    """The Kubernetes version of an installed package ('1.33.1' of '1.33.1-1.1')."""
    package = found.package(name)
    return package.version.split("-", 1)[0] if package else None


# -- `up` keeps the version ----------------------------------------------------------------


def running_elsewhere(ctx: Context) -> dict[str, str]:
    """Host -> the version it runs, for every host kubeadm configured whose kubeadm or
    kubelet is not the cluster file's version."""
    wanted = str(ctx.cluster.release)
    found_at = {}
    for host in ctx.cluster.kube_nodes:
        if host.name not in ctx.facts.hosts or not ctx.host_facts(host).kubeadm_configured:
            continue
        found = ctx.host_facts(host)
        versions = {installed(found, name) for name in KUBE_NODE_PACKAGES} - {None}
        if versions and versions != {wanted}:  # a missing package is repaired by node setup
            # What the node runs is its kubelet; a kubeadm ahead of it is an upgrade begun.
            found_at[host.name] = installed(found, "kubelet") or installed(found, "kubeadm") or "?"
    return found_at


class KeepVersion(Step):
    """First in `up`: a running cluster at another version than the cluster file's is
    refused before anything changes (exit 3), and `plan` says the same."""

    title = "Kubernetes version"

    def plan(self, ctx: Context) -> list[Action]:
        elsewhere = running_elsewhere(ctx)
        if elsewhere:
            by_version: dict[str, list[str]] = {}
            for host, version in elsewhere.items():
                by_version.setdefault(version, []).append(host)
            running = "; ".join(
                f"{', '.join(hosts)} {'run' if len(hosts) > 1 else 'runs'} {version}"
                for version, hosts in sorted(by_version.items())
            )
            raise UnsafeError(
                f"the cluster file says Kubernetes {ctx.cluster.release}, but {running}: "
                "`up` never changes the version of a running cluster; run `k8sboot upgrade`"
            )
        return []


# -- the record of an upgrade under way ----------------------------------------------------


@dataclass
class UpgradeRecord:
    target: str
    backup: str | None = None  # the catalogue backup taken first: the way back
    cordoned: list[str] = field(default_factory=list)  # by the upgrade, to uncordon
    running: str | None = None  # the version the control planes ran before

    @staticmethod
    def path(state: StateDir) -> Path:
        return state.root / "upgrade.json"

    @classmethod
    def read(cls, state: StateDir) -> UpgradeRecord | None:
        try:
            return cls(**json.loads(cls.path(state).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:
            raise UserError(
                f"{cls.path(state)} is unreadable ({error}); fix or remove it"
            ) from None

    def write(self, state: StateDir) -> None:
        write_private(self.path(state), json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def clear(cls, state: StateDir) -> None:
        cls.path(state).unlink(missing_ok=True)


def record_of(ctx: Context) -> UpgradeRecord:
    """The record of this upgrade, or an empty one for the cluster file's version."""
    target = str(ctx.cluster.release)
    record = UpgradeRecord.read(ctx.state)
    return record if record is not None and record.target == target else UpgradeRecord(target)


# -- what each node still needs ------------------------------------------------------------


def control_plane_at(found: HostFacts, version: str) -> bool:
    """kube-apiserver, -controller-manager and -scheduler all run `version` here."""
    return all(found.static_pod_version(f"{pod}.yaml") == version for pod in CONTROL_PLANE_PODS)


def kubelet_running(ctx: Context, host: Host) -> str | None:
    node = ctx.nodes.get(host.name)
    return node.kubelet_version.removeprefix("v") if node else None


def remaining(
    ctx: Context, host: Host, target: str, apply_here: bool, record: UpgradeRecord
) -> tuple[str, ...]:
    """The phases `host` still needs, read from what it runs. A phase done is never done
    again; a phase killed half-way is run again (each is safe to repeat)."""
    found = ctx.host_facts(host)
    phases = []
    if installed(found, "kubeadm") != target:
        phases.append(KUBEADM)
    if host.has("control-plane"):
        if not control_plane_at(found, target) or apply_here:
            phases.append(APPLY if apply_here else NODE)
    elif installed(found, "kubelet") != target:
        phases.append(NODE)  # a worker's kubelet configuration, before its kubelet
    kubelet_done = (
        installed(found, "kubelet") == target
        and installed(found, "kubectl") == target
        and kubelet_running(ctx, host) == target
    )
    node = ctx.nodes.get(host.name)
    # A node someone cordoned before the upgrade stays cordoned after it.
    theirs = node is not None and node.unschedulable and host.name not in record.cordoned
    if not kubelet_done:
        phases += [DRAIN, KUBELET] + ([] if theirs else [UNCORDON])
    elif host.name in record.cordoned:
        phases.append(UNCORDON)
    return tuple(phases)


def stored_version(connection: Askable) -> str | None:
    """kubernetesVersion of kubeadm's stored ClusterConfiguration, which `upgrade node`
    upgrades to: `upgrade apply` uploads it only after every component moved."""
    result = connection.ask(
        f"{KUBECTL} -n kube-system get configmap kubeadm-config -o json",
        check=False,
        timeout=60,
        shown="kubectl get configmap kubeadm-config",
    )
    if not result.ok:
        return None
    try:
        text = json.loads(result.stdout)["data"]["ClusterConfiguration"]
    except (ValueError, KeyError):
        return None
    for line in text.splitlines():  # any API version: the field keeps its name
        key, _, value = line.partition(":")
        if key.strip() == "kubernetesVersion":
            return value.strip().strip("'\"").removeprefix("v")
    return None


def control_plane_work(ctx: Context, record: UpgradeRecord) -> list[tuple[Host, tuple[str, ...]]]:
    target = str(ctx.cluster.release)
    planes = _virtual_ip_holder_last(ctx, ctx.cluster.control_planes)
    upgraded = [h for h in planes if control_plane_at(ctx.host_facts(h), target)]

    def work(apply_on: Host | None) -> list[tuple[Host, tuple[str, ...]]]:
        found = [(h, remaining(ctx, h, target, h is apply_on, record)) for h in planes]
        return [(h, phases) for h, phases in found if phases]

    if not upgraded:
        return work(planes[0])
    # Until kubeadm-config names the target, `upgrade apply` runs again where it ran: it
    # uploads kubeadm-config last, and `upgrade node` elsewhere would keep the old version.
    left = work(None)
    if (left or worker_work(ctx, record)) and stored_version(ctx.view[ctx.api_host.name]) != target:
        return work(upgraded[0])
    return left


def _virtual_ip_holder_last(ctx: Context, planes: list[Host]) -> list[Host]:
    """The control plane holding the virtual IP goes last: the address then moves once,
    onto an upgraded control plane. Each move can cut the requests in flight to the old
    holder (its address is gone before they are answered)."""
    endpoint = ctx.cluster.control_plane_endpoint
    if endpoint.type != "kube-vip" or not endpoint.address:
        return list(planes)

    def holds(host: Host) -> bool:
        facts = ctx.facts.hosts.get(host.name)
        return facts is not None and facts.interface_of(endpoint.address) is not None

    return sorted(planes, key=holds)


def worker_work(ctx: Context, record: UpgradeRecord) -> list[tuple[Host, tuple[str, ...]]]:
    target = str(ctx.cluster.release)
    work = []
    for host in ctx.cluster.with_role("worker"):
        if host.has("control-plane"):
            continue
        phases = remaining(ctx, host, target, False, record)
        if phases:
            work.append((host, phases))
    return work


def upgrading(ctx: Context) -> bool:
    record = record_of(ctx)
    return bool(control_plane_work(ctx, record) or worker_work(ctx, record))


# -- 1. checks -----------------------------------------------------------------------------


class UpgradeChecks(Step):
    """Everything that would stop the upgrade half-way, checked before anything changes."""

    title = "upgrade checks"

    def __init__(self, drain: DrainOptions):
        self.drain = drain

    def plan(self, ctx: Context) -> list[Action]:
        if not ctx.initialised:
            raise UserError("no running cluster to upgrade: bring it up with `k8sboot up`")
        if not ctx.api.answers:
            raise ctx.api.needed("upgrading")
        record = record_of(ctx)
        planes = control_plane_work(ctx, record)
        workers = worker_work(ctx, record)
        if not planes and not workers:
            return []  # converged: nothing to check
        target = str(ctx.cluster.release)
        self._versions(ctx, target)
        self._health(ctx)
        self._packages(ctx, target)
        self._budgets(ctx, [host for host, phases in [*planes, *workers] if DRAIN in phases])
        return []

    def _versions(self, ctx: Context, target: str) -> None:
        running = [v for v in api_server_versions(ctx).values() if v is not None]
        oldest = min(running, key=version_tuple)
        wanted = version_tuple(target)
        if any(version_tuple(v) > wanted for v in running):
            newest = max(running, key=version_tuple)
            raise UnsafeError(
                f"the cluster runs {newest} and the cluster file says {target}: k8sboot does not "
                "downgrade (kubeadm cannot undo an upgrade); the way back from an upgrade is the "
                "backup it took first (`k8sboot etcd restore`)"
            )
        if wanted[1] > version_tuple(oldest)[1] + 1:
            between = ", ".join(f"1.{m}" for m in range(version_tuple(oldest)[1] + 1, wanted[1]))
            raise UnsafeError(
                f"{oldest} to {target} skips {between}: kubeadm upgrades one minor at a time; "
                "pass --walk to go through each minor in turn (its newest release in the "
                "repository, each an upgrade with its own checks and backup), or set "
                f"kubernetes.version to a {between.split(', ')[0]} release first"
            )
        too_old = {
            name: node.kubelet_version
            for name, node in ctx.nodes.items()
            if node.kubelet_version.startswith("v1.")
            and version_tuple(node.kubelet_version[1:])[1] < wanted[1] - KUBELET_SKEW
        }
        if too_old:
            listed = ", ".join(f"{n} ({v})" for n, v in sorted(too_old.items()))
            raise UnsafeError(
                f"kubelets more than {KUBELET_SKEW} minors older than {target}: {listed}; "
                "upgrade them first (version-skew policy)"
            )

    def _health(self, ctx: Context) -> None:
        names = [h.name for h in ctx.cluster.kube_nodes]
        missing = [n for n in names if n not in ctx.nodes]
        not_ready = [n for n in names if n in ctx.nodes and not ctx.nodes[n].ready]
        problems = [f"{', '.join(missing)} not registered"] if missing else []
        problems += [f"{', '.join(not_ready)} not Ready"] if not_ready else []
        if ctx.cluster.etcd.topology == "stacked":
            etcd = EtcdCtl(
                ctx.view[ctx.api_host.name],
                topology.tls_on(ctx.cluster, ctx.api_host),
                [topology.endpoint(h) for h in topology.members(ctx.cluster)],
            )
            sick = [h.endpoint for h in etcd.health(etcd.endpoints) if not h.healthy]
            problems += [f"etcd members unhealthy: {', '.join(sick)}"] if sick else []
        if problems:
            raise UnsafeError(
                "the cluster is not healthy enough to upgrade: "
                + "; ".join(problems)
                + " (`k8sboot health` says more)"
            )

    def _packages(self, ctx: Context, target: str) -> None:
        source = package_vars(ctx.cluster)
        if source["kube_packages_source"] == "directory":
            raise UserError(
                "packages.source: directory: upgrades need a package repository (upstream or "
                "mirror) that serves the target version"
            )
        url = source["kube_packages_url"]
        versions = served(ctx, url)
        absent = [p for p in ("kubeadm", "kubelet", "kubectl") if target not in versions.get(p, ())]
        if absent:
            raise UserError(
                f"{url} has no {', '.join(absent)} {target}; set kubernetes.version to a "
                "version it serves, or packages.url to a repository that has it"
            )

    def _budgets(self, ctx: Context, hosts: list[Host]) -> None:
        if not hosts:
            return
        api = ctx.api_host
        server = observe.api_server(api.ip)
        connection = ctx.view[api.name]
        budgets = observe.budgets(connection, server)
        pods = observe.pods_by_node(connection, server)  # one question, not one per node
        for host in hosts:
            found = blockers(
                pods.get(host.name, []), budgets, host.name, self.drain.delete_emptydir_data
            )
            refused = overridable(found, self.drain.force, self.drain.delete_emptydir_data, False)
            if refused:
                raise UnsafeError(refusal(host.name, refused, False))


def api_server_versions(ctx: Context) -> dict[str, str | None]:
    """Control plane -> the version its kube-apiserver static pod runs."""
    found = {
        h.name: ctx.host_facts(h).static_pod_version("kube-apiserver.yaml")
        for h in ctx.cluster.control_planes
    }
    if not any(found.values()):
        raise MachineError("no control plane runs a kube-apiserver static pod kubeadm wrote")
    return found


def served(ctx: Context, url: str) -> dict[str, set[str]]:
    """Package -> the versions the repository at `url` serves (its flat `Packages`
    index, as pkgs.k8s.io's repositories have), read from the first control plane: the
    hosts are what must reach it."""
    host = ctx.cluster.control_planes[0]
    index = f"{url.rstrip('/')}/Packages"
    fetch = (
        "python3 -c 'import sys, urllib.request; "
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' "
        f"{shlex.quote(index)}"
    )
    result = ctx.view[host.name].ask(fetch, check=False, timeout=90, shown=f"read {index}")
    if not result.ok:
        tail = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise MachineError(f"{host.name}: cannot read the package index {index}: {tail}")
    return _index_versions(result.stdout)


def at_version(cluster: Cluster, version: str) -> Cluster:
    """The cluster file as if it said `version`."""
    kubernetes = cluster.kubernetes.model_copy(update={"version": version})
    return cluster.model_copy(update={"kubernetes": kubernetes})


def walk(ctx: Context) -> list[str]:
    """The versions an upgrade to the cluster file's goes through, one minor at a time:
    the newest release of each minor between that the repository serves (kubeadm, kubelet
    and kubectl all), then the file's own."""
    target = str(ctx.cluster.release)
    oldest = min((v for v in api_server_versions(ctx).values() if v), key=version_tuple)
    steps = []
    for minor in range(version_tuple(oldest)[1] + 1, version_tuple(target)[1]):
        url = package_vars(at_version(ctx.cluster, f"1.{minor}.0"))["kube_packages_url"]
        versions = served(ctx, url)
        common = set.intersection(
            *(versions.get(p, set()) for p in ("kubeadm", "kubelet", "kubectl"))
        )
        releases = [v for v in common if version_tuple(v)[:2] == (1, minor) and "-" not in v]
        if not releases:
            raise UserError(
                f"{url} serves no 1.{minor} release to go through on the way to {target}"
            )
        steps.append(max(releases, key=version_tuple))
    return [*steps, target]


def _index_versions(packages_index: str) -> dict[str, set[str]]:
    """Package -> the Kubernetes versions an apt `Packages` index lists for it."""
    found: dict[str, set[str]] = {}
    name = None
    for line in packages_index.splitlines():
        key, _, value = line.partition(":")
        if key == "Package":
            name = value.strip()
        elif key == "Version" and name:
            found.setdefault(name, set()).add(value.strip().split("-", 1)[0])
    return found


# -- 2. the backup first -------------------------------------------------------------------


class UpgradeBackup(Step):
    title = "etcd backup before the upgrade"

    def plan(self, ctx: Context) -> list[Action]:
        record = record_of(ctx)
        if record.backup is not None or not upgrading(ctx):
            return []
        return [*snapshot_action(ctx, None, PRE_UPGRADE), RecordUpgrade(record.target)]


@dataclass(frozen=True)
class RecordUpgrade(OnThisMachine):
    target: str

    def describe(self) -> str:
        return f"record the upgrade to {self.target} and its backup in the state directory"


@handles(RecordUpgrade)
def record_upgrade(executor: Executor, action: RecordUpgrade) -> Outcome:
    ctx = executor.ctx
    taken = [
        m
        for m in open_store(ctx.cluster).manifests()
        if m.cluster == ctx.cluster.name and m.origin == PRE_UPGRADE
    ]
    newest = max(taken, key=lambda m: (m.created, m.name))
    record = UpgradeRecord.read(ctx.state)
    if record is None or record.target != action.target:
        record = UpgradeRecord(action.target)
    record.backup = newest.name
    versions = [v for v in api_server_versions(ctx).values() if v is not None]
    record.running = min(versions, key=version_tuple)
    record.write(ctx.state)
    way_back = (
        f"backup {newest.name} was taken before the upgrade: the way back is "
        f"`k8sboot etcd restore {newest.name}` with the packages of the version before"
    )
    return Outcome((), notes=(way_back,))


# -- 3. external etcd, when the target calls for a newer one ------------------------------


class UpgradeExternalEtcd(Step):
    """External etcd installed by k8sboot, to the release the cluster file now calls for
    (its etcd.version, else the one kubeadm pins for the target minor): one member at a
    time, each restarted and the cluster healthy again before the next, so quorum holds.
    Never a downgrade: etcd cannot run a data directory a newer etcd wrote."""

    title = "upgrade external etcd"

    def plan(self, ctx: Context) -> list[Action]:
        cluster = ctx.cluster
        if cluster.etcd.topology != "external":
            return []
        wanted = cluster.etcd_version
        members = topology.members(cluster)
        runner = topology.tool_hosts(cluster)[0]
        etcd = EtcdCtl(
            ctx.view[runner.name],
            topology.tls_on(cluster, runner),
            [topology.endpoint(h) for h in members],
        )
        running = {s.endpoint: s.version for s in etcd.status(etcd.endpoints)}
        actions: list[Action] = []
        for host in members:
            version = running.get(topology.endpoint(host))
            if version is None:
                raise MachineError(f"etcd on {host.name} does not answer: `k8sboot etcd health`")
            if version_tuple(version) > version_tuple(wanted):
                raise UnsafeError(
                    f"etcd on {host.name} runs {version}, newer than {wanted}: etcd is never "
                    "downgraded (set etcd.version to the one that runs)"
                )
            if version != wanted:
                actions.append(UpgradeEtcdMember(host.name, version, wanted))
        return actions


@dataclass(frozen=True)
class UpgradeEtcdMember(OnHost):
    running: str
    version: str

    def describe(self) -> str:
        return (
            f"etcd on {self.host} from {self.running} to {self.version}: install, restart, "
            "wait until the cluster is healthy"
        )


@handles(UpgradeEtcdMember)
def upgrade_etcd_member(executor: Executor, action: UpgradeEtcdMember) -> Outcome:
    executor.execute(InstallEtcd(action.host, action.version, server=True))
    executor.progress(action.host, f"restart etcd {action.version}")
    executor.transport[action.host].run("systemctl restart etcd", timeout=START_TIMEOUT)
    wait_healthy(executor)
    return Outcome((action.host,), reprobe=(action.host,))


# -- 4. and 5. the nodes -------------------------------------------------------------------


@dataclass(frozen=True)
class UpgradeNode(OnHost):
    version: str
    phases: tuple[str, ...]
    via: str  # the control plane whose API server and etcd client act for this node
    server: str  # that API server's URL
    drain: DrainOptions

    def describe(self) -> str:
        said = {
            APPLY: f"kubeadm upgrade apply v{self.version}",
            NODE: "kubeadm upgrade node",
            DRAIN: "drain",
            KUBELET: f"kubelet and kubectl {self.version}, restart the kubelet",
            UNCORDON: "uncordon",
        }
        return f"upgrade {self.host}: " + ", ".join(said[p] for p in self.phases)


@dataclass(frozen=True)
class InstallKubeadm(OnHost):
    version: str

    def describe(self) -> str:
        return f"install kubeadm {self.version} on {self.host} (the repository of its minor)"


@handles(InstallKubeadm)
def install_kubeadm(executor: Executor, action: InstallKubeadm) -> Outcome:
    _install(executor, executor.transport[action.host], ("kubeadm",), action.version)
    return Outcome((action.host,), reprobe=(action.host,))


class UpgradeKubeadm(Step):
    """The new kubeadm on every node that needs it, all at once, before any node is
    upgraded. The package is a command, run later node by node: installing it changes
    nothing that runs, and one round of apt on every node at once costs about what one
    node's did (done node by node, it was 7 s of a 7-node upgrade)."""

    title = "upgrade kubeadm on every node"
    hosts_apart = True

    def plan(self, ctx: Context) -> list[Action]:
        # Read from each node's packages alone: the nodes' other work (and the question to
        # the API it may need) is planned by the steps after, once.
        target = str(ctx.cluster.release)
        return [
            InstallKubeadm(host.name, target)
            for host in ctx.cluster.kube_nodes
            if installed(ctx.host_facts(host), "kubeadm") != target
        ]


def _node_actions(
    ctx: Context, work: list[tuple[Host, tuple[str, ...]]], drain: DrainOptions
) -> list[Action]:
    """The upgrade of each node after its kubeadm package (UpgradeKubeadm's, a step
    before: it stopped the run if it failed anywhere)."""
    actions: list[Action] = []
    for host, all_phases in work:
        phases = tuple(p for p in all_phases if p != KUBEADM)
        if not phases:
            continue
        try:
            via = api_host(ctx, exclude=host.name)
        except MachineError:  # one control plane: it acts for itself
            via = host
        server = observe.api_server(via.ip)
        actions.append(
            UpgradeNode(host.name, str(ctx.cluster.release), phases, via.name, server, drain)
        )
    return actions


class UpgradeControlPlanes(Step):
    """One at a time: never two API servers or kubelets restarting at once."""

    title = "upgrade control planes"

    def __init__(self, drain: DrainOptions):
        self.drain = drain

    def plan(self, ctx: Context) -> list[Action]:
        return _node_actions(ctx, control_plane_work(ctx, record_of(ctx)), self.drain)


class UpgradeWorkers(Step):
    """One at a time, or --max-unavailable at a time: a failure starts no further one."""

    title = "upgrade workers"
    hosts_apart = True

    def __init__(self, drain: DrainOptions, max_unavailable: int = 1):
        self.drain = drain
        self.most_at_once = max_unavailable

    def plan(self, ctx: Context) -> list[Action]:
        return _node_actions(ctx, worker_work(ctx, record_of(ctx)), self.drain)


@handles(UpgradeNode)
def upgrade_node(executor: Executor, action: UpgradeNode) -> Outcome:
    ctx = executor.ctx
    connection = executor.transport[action.host]
    host = ctx.cluster.host(action.host)
    assert host is not None
    notes: list[str] = []
    if APPLY in action.phases or NODE in action.phases:
        if host.has("control-plane"):
            _step_aside(executor, action, host)
        try:
            notes += _kubeadm_upgrade(executor, connection, action, host)
        finally:
            if host.has("control-plane"):
                _step_back(executor, host)
    if DRAIN in action.phases:
        if UNCORDON in action.phases:  # cordoned by the upgrade: uncordoned by it too
            _remember_cordoned(ctx.state, action.version, action.host)
        executor.execute(
            Drain(
                action.via,
                action.host,
                action.drain.timeout,
                action.drain.delete_emptydir_data,
                action.drain.force,
                action.server,
            )
        )
    if KUBELET in action.phases:
        _install(executor, connection, ("kubelet", "kubectl"), action.version)
        executor.progress(action.host, "restart the kubelet")
        connection.run("systemctl daemon-reload && systemctl restart kubelet", timeout=180)
        _wait_kubelet(executor, action)
    if UNCORDON in action.phases:
        executor.execute(Cordon(action.via, action.host, False, action.server))
        _forget_cordoned(ctx.state, action.version, action.host)
    return Outcome((action.host,), notes=tuple(notes), reprobe=(action.host,))


def _install(
    executor: Executor, connection: Connection, packages: tuple[str, ...], version: str
) -> None:
    """The packages at `version` from the repository of its minor (pkgs.k8s.io has one
    per minor), held there, as the upgrade guide does it."""
    source = package_vars(executor.ctx.cluster)
    executor.progress(connection.name, f"install {' '.join(packages)} {version}")
    sources = render_sources(source["kube_packages_url"], bool(source["kube_packages_key_url"]))
    # The repository's index is read once per node (its kubelet and kubectl come from
    # the index read for its kubeadm): only when the repository file changes. Only the
    # Kubernetes repository is read (the others may be out of reach); their lists stay.
    refresh = ""
    if connection.read_file(SOURCES_FILE) != sources.encode():
        connection.write_file(SOURCES_FILE, sources.encode(), 0o644)
        refresh = (
            f"apt-get update -q -o Dir::Etc::sourcelist={SOURCES_FILE} "
            "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >/dev/null && "
        )
    pinned = " ".join(f"{p}={version}-*" for p in packages)
    # An install cut short (the node rebooted under it) leaves dpkg "interrupted", and apt
    # refuses every install until the unpacked packages are configured.
    connection.run(
        "dpkg --configure -a >/dev/null && "
        + refresh
        + "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-change-held-packages "
        f"-o Dpkg::Options::=--force-confold {pinned} >/dev/null && "
        f"apt-mark hold {' '.join(packages)} >/dev/null",
        timeout=APT_TIMEOUT,
        shown=f"apt-get install {pinned}",
    )


def render_sources(url: str, signed: bool) -> str:
    """The repository as the kube_packages role writes it (its block, its markers)."""
    trust = "Signed-By: /etc/apt/keyrings/kubernetes.asc" if signed else "Trusted: yes"
    return f"# BEGIN k8sboot\nTypes: deb\nURIs: {url}\nSuites: /\n{trust}\n# END k8sboot\n"


def _kubeadm_upgrade(
    executor: Executor, connection: Connection, action: UpgradeNode, host: Host
) -> list[str]:
    notes = []
    _put_back_manifests(connection)
    if APPLY in action.phases:
        executor.progress(action.host, f"kubeadm upgrade plan v{action.version}")
        planned = connection.run(
            f"kubeadm upgrade plan v{action.version} -o json </dev/null",
            timeout=KUBEADM_TIMEOUT,
            shown="kubeadm upgrade plan",
        )
        notes.append(f"kubeadm upgrade plan on {action.host}: {_verdict(planned.stdout)}")
        executor.progress(action.host, f"kubeadm upgrade apply v{action.version}")
        connection.run(
            f"kubeadm upgrade apply v{action.version} -y </dev/null",
            timeout=KUBEADM_TIMEOUT,
            shown=f"kubeadm upgrade apply v{action.version}",
        )
    else:
        if host.has("control-plane"):
            stored = stored_version(connection)
            if stored != action.version:  # it would "upgrade" to the old version
                raise MachineError(
                    f"kubeadm-config says {stored or 'nothing'}, not {action.version}: the "
                    "first control plane's `kubeadm upgrade apply` has not finished; run "
                    "`k8sboot upgrade` again"
                )
        executor.progress(action.host, "kubeadm upgrade node")
        connection.run("kubeadm upgrade node </dev/null", timeout=KUBEADM_TIMEOUT)
    return notes


def _verdict(output: str) -> str:
    """kubeadm's UpgradePlan (output.kubeadm.k8s.io/v1alpha3) said in a line."""
    if not output.strip():
        return "nothing to upgrade"
    try:
        plan = json.loads(output)
    except ValueError:
        return "no JSON answer"
    rows = [
        f"{c['name']} {c.get('currentVersion', '?')} -> {c.get('newVersion', '?')}"
        for upgrade in plan.get("availableUpgrades", [])
        for c in upgrade.get("components", [])
        if not c.get("nodeName") or c["name"] == "etcd"
    ]
    manual = [c["group"] for c in plan.get("configVersions", []) if c.get("manualUpgradeRequired")]
    said = "; ".join(dict.fromkeys(rows)) or "nothing to upgrade"
    return said + (f"; manual upgrade required: {', '.join(manual)}" if manual else "")


def _put_back_manifests(connection: Connection) -> None:
    """A run killed between kubeadm's two renames leaves a component without manifest,
    and kubeadm's preflight then refuses every later run: the newest copy kubeadm kept
    (the new one it prepared, else the old one it backed up) goes back first."""
    script = " ; ".join(
        f"[ -e {MANIFESTS_DIR}/{pod}.yaml ] || "
        f"{{ kept=$(ls -t {KUBEADM_TMP}/kubeadm-upgraded-manifests*/{pod}.yaml "
        f"{KUBEADM_TMP}/kubeadm-backup-manifests-*/{pod}.yaml 2>/dev/null | head -n 1); "
        f'[ -z "$kept" ] || cp -p "$kept" {MANIFESTS_DIR}/{pod}.yaml; }}'
        for pod in CONTROL_PLANE_PODS
    )
    connection.run(script + " ; true", timeout=60, shown="restore manifests kubeadm left aside")


def _step_aside(executor: Executor, action: UpgradeNode, host: Host) -> None:
    """etcd leadership and the virtual IP off this control plane before its static pods
    restart: the API through the endpoint keeps answering."""
    cluster = executor.ctx.cluster
    if cluster.etcd.topology == "stacked" and action.via != action.host:
        via = cluster.host(action.via)
        assert via is not None
        _move_etcd_leader(executor, cluster, host, via)
    if cluster.control_plane_endpoint.type == "kube-vip" and action.via != action.host:
        stop_holding(executor, action.host, str(cluster.control_plane_endpoint.address))
        # Until the endpoint answers from the control plane that took the address over.
        executor.execute(WaitApiServer(action.via, cluster.endpoint))


def _step_back(executor: Executor, host: Host) -> None:
    ctx = executor.ctx
    if ctx.cluster.control_plane_endpoint.type != "kube-vip":
        return
    file = kube_vip_manifest(ctx, host, during_init=False)
    executor.transport[host.name].write_file(str(file.path), file.content.encode(), file.mode)


def _move_etcd_leader(executor: Executor, cluster: Cluster, host: Host, via: Host) -> None:
    endpoints = [topology.endpoint(h) for h in topology.members(cluster)]
    etcd = EtcdCtl(executor.transport[via.name], topology.tls_on(cluster, via), endpoints)
    statuses = etcd.status(endpoints)
    leader = next((s for s in statuses if s.member_id == s.leader_id), None)
    members = etcd.members()
    here = member_by_peer_url(members, host.ip)
    if leader is None or here is None or leader.leader_id != here.id:
        return
    healthy = {s.member_id for s in statuses}
    transferee = next((m for m in members if m.id != here.id and m.id in healthy), None)
    if transferee is None:
        raise MachineError(f"{host.name} leads etcd and no other member answers to take over")
    executor.progress(host.name, f"move etcd leadership to {transferee.name or transferee.hex_id}")
    etcd.move_leader(transferee, leader.endpoint)


def _wait_kubelet(executor: Executor, action: UpgradeNode) -> None:
    """Until the Node is Ready and its kubelet reports the new version."""
    connection = executor.transport[action.via]
    wanted = f"v{action.version}"
    deadline = time.monotonic() + executor.ctx.wait_timeout
    said = ""
    while True:
        result = connection.run(
            f"{observe.kubectl(action.server)} get node {shlex.quote(action.host)} -o json",
            check=False,
            timeout=60,
            shown=f"kubectl get node {action.host}",
            quiet=True,  # polled: what changed is logged below
        )
        state = "no answer"
        if result.ok:
            node = json.loads(result.stdout)
            version = node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
            if ready and version == wanted:
                return
            state = f"kubelet {version or '?'}, {'Ready' if ready else 'not Ready'}"
        if state != said:
            executor.ctx.log.write(action.host, f"waiting for kubelet {wanted} Ready: {state}")
            said = state
        if time.monotonic() > deadline:
            raise MachineError(
                f"{action.host}: kubelet not Ready at {wanted} after "
                f"{executor.ctx.wait_timeout:.0f}s ({state})"
            )
        time.sleep(1)  # a kubelet restarted is Ready in seconds: each second counts, per node


def _remember_cordoned(state: StateDir, target: str, node: str) -> None:
    record = UpgradeRecord.read(state) or UpgradeRecord(target)
    if node not in record.cordoned:
        record.cordoned.append(node)
        record.write(state)


def _forget_cordoned(state: StateDir, target: str, node: str) -> None:
    record = UpgradeRecord.read(state)
    if record is not None and node in record.cordoned:
        record.cordoned.remove(node)
        record.write(state)


# -- 6. after the nodes --------------------------------------------------------------------


class RemoveKubeadmEtcdCopies(Step):
    """kubeadm copies the whole etcd data directory (every Secret, in clear) at every
    `upgrade apply|node` and keeps it forever; once every node runs the new version, the
    catalogue's backup is the way back, and the copies go."""

    title = "remove kubeadm's etcd copies"
    hosts_apart = True

    def plan(self, ctx: Context) -> list[Action]:
        if upgrading(ctx) or record_of(ctx).backup is None:
            return []
        commands = []
        for host in ctx.cluster.control_planes:
            listed = (
                ctx.view[host.name]
                .ask(
                    f"ls -d {KUBEADM_ETCD_COPIES} 2>/dev/null; true",
                    timeout=30,
                    shown="ls kubeadm's etcd copies",
                )
                .stdout.split()
            )
            if listed:
                commands.append((host.name, "rm -rf " + " ".join(shlex.quote(p) for p in listed)))
        if not commands:
            return []
        return [
            RunCommands(
                tuple(commands), "remove kubeadm's plaintext etcd copies (/etc/kubernetes/tmp)"
            )
        ]


class PackagesAfterUpgrade(NodeSetup):
    """Node setup once every node runs the new version: the repository of the new minor
    and the packages held there. Where the upgrade did all the package role would do, the
    role is recorded as converged without running it (an Ansible run of every host cost
    20 s of a 140 s upgrade); anything else drifted still runs the roles."""

    def plan(self, ctx: Context) -> list[Action]:
        return [] if upgrading(ctx) else super().plan(ctx)

    def done_by_earlier_steps(self, ctx: Context, host: Host, role: str) -> str | None:
        record = UpgradeRecord.read(ctx.state)
        if role != "kube_packages" or record is None or record.running is None:
            return None
        if not _packages_done(ctx, host.name, record.running):
            return None
        return f"the upgrade installed and held the {ctx.cluster.release} packages"


def _packages_done(ctx: Context, name: str, running: str) -> bool:
    """The kube_packages role converged here at `running` (its stamp says so), and since
    then the upgrade did what the role does for the new version: the repository file as
    the role writes it, its key in place, the three packages at the version and held,
    the kubelet enabled."""
    host = ctx.cluster.host(name)
    assert host is not None
    found = ctx.host_facts(host)
    before = package_vars(at_version(ctx.cluster, running))
    if before["kube_packages_source"] == "directory":
        return False  # the role copies the package files: not what the upgrade does
    if found.stamp("kube_packages") != fingerprint("kube_packages", before):
        return False
    now = package_vars(ctx.cluster)
    sources = render_sources(now["kube_packages_url"], bool(now["kube_packages_key_url"]))
    if found.file_hash(SOURCES_FILE) != sha256(sources):
        return False
    if now["kube_packages_key_url"] and found.file_hash(KEYRING_FILE) is None:
        return False
    version = str(ctx.cluster.release)
    for package in (found.package(p) for p in ("kubeadm", "kubelet", "kubectl")):
        if package is None or not package.version.startswith(f"{version}-") or not package.held:
            return False
    return found.enabled("kubelet")


class FinishUpgrade(Step):
    title = "finish the upgrade"

    def plan(self, ctx: Context) -> list[Action]:
        record = UpgradeRecord.read(ctx.state)
        if record is None or record.target != str(ctx.cluster.release) or upgrading(ctx):
            return []
        return [ClearUpgradeRecord(record.target, record.backup)]


@dataclass(frozen=True)
class ClearUpgradeRecord(OnThisMachine):
    target: str
    backup: str | None

    def describe(self) -> str:
        return f"record that the cluster runs {self.target}"


@handles(ClearUpgradeRecord)
def clear_record(executor: Executor, action: ClearUpgradeRecord) -> Outcome:
    UpgradeRecord.clear(executor.ctx.state)
    kept = (
        f"; backup {action.backup} from before it stays in the catalogue" if action.backup else ""
    )
    return Outcome((), notes=(f"the cluster runs Kubernetes {action.target}{kept}",))
