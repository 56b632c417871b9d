"""Node setup: the Ansible roles each host needs (OS, containerd, kube packages),
planned from probed drift, and the services k8sboot manages."""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from functools import cache
from typing import Any

from k8sboot.actions import Action, RunCommands
from k8sboot.ansible import PlaybookFailed, run_playbook
from k8sboot.executor import Executor, Outcome, handles, raise_first
from k8sboot.facts import HostFacts, Wanted
from k8sboot.host_state import STAMPS_DIR
from k8sboot.kubeadm_node import KERNEL_MODULES, SYSCTLS
from k8sboot.resources import data_dir
from k8sboot.spec import Cluster, Host
from k8sboot.step import Context, Step
from k8sboot.transport import Connection
from k8sboot.versions import KubeVersion

PLAYBOOK = "node.yml"


UPSTREAM_REPOSITORY = "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"


# Files each role writes whole. Their hashes go into the role's stamp when it converges,
# so that a file deleted or edited later is drift, even while the live setting it
# persists (a sysctl, a loaded module) still holds and hides the loss until a reboot.
KEYRING_FILE = "/etc/apt/keyrings/kubernetes.asc"
SOURCES_FILE = "/etc/apt/sources.list.d/kubernetes.sources"
OWNED_FILES = {
    "prepare": ("/etc/modules-load.d/k8sboot.conf", "/etc/sysctl.d/99-k8sboot.conf"),
    "containerd": (),
    "kube_packages": (KEYRING_FILE, SOURCES_FILE),
}


@cache
def _role_files_digest(role: str) -> str:
    """The role's own files and the entry playbook: editing them means running again."""
    digest = hashlib.sha256()
    playbooks = data_dir("playbooks")
    for path in [playbooks / PLAYBOOK, *sorted((playbooks / "roles" / role).rglob("*"))]:
        if path.is_file():
            digest.update(str(path.relative_to(playbooks)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(role: str, role_vars: dict[str, Any]) -> str:
    payload = _role_files_digest(role) + json.dumps(role_vars, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def role_vars(cluster: Cluster, host: Host, found: HostFacts) -> dict[str, dict[str, Any]]:
    """Each role's variables for this host: desired state only (plus the container flag,
    which changes what a role can do)."""
    roles: dict[str, dict[str, Any]] = {
        "prepare": {
            "prepare_cluster_name": cluster.name,
            "prepare_container": found.container or "",
            # Its own name, which kubeadm's preflight resolves. Nothing else needs names
            # (kubeadm joins through the endpoint; the API server reaches kubelets by
            # their InternalIP first): a host added later leaves every other host alone.
            "prepare_hosts_entries": [{"ip": host.ip, "name": host.name}],
            "prepare_modules": list(KERNEL_MODULES),
            "prepare_sysctls": dict(SYSCTLS),
        }
    }
    if host.has("control-plane") or host.has("worker"):
        roles["containerd"] = {}
        roles["kube_packages"] = package_vars(cluster)
    return roles


def package_vars(cluster: Cluster) -> dict[str, Any]:
    """The kube_packages role's variables. A repository URL may hold `{minor}`, as
    pkgs.k8s.io's layout does: one repository per minor, which an upgrade moves on."""
    packages = cluster.packages
    release: KubeVersion = cluster.release
    url = (packages.url or UPSTREAM_REPOSITORY).replace("{minor}", release.minor_str)
    key_url = packages.key_url
    if packages.source == "upstream" and key_url is None:
        key_url = url + "Release.key"
    return {
        "kube_packages_version": str(release),
        "kube_packages_source": packages.source,
        "kube_packages_url": url,
        "kube_packages_key_url": key_url or "",
        "kube_packages_directory": str(packages.path or ""),
    }


def drift(cluster: Cluster, host: Host, found: HostFacts, role: str, wanted: str) -> str | None:
    """Why `role` must run on `host`, or None when it is converged."""
    stamp = found.stamp(role)
    if stamp is None:
        return "not set up yet"
    if stamp != wanted:
        return "settings or roles changed"
    for path, written in found.stamped_files(role).items():
        now = found.file_hash(path)
        if now != written:
            return f"{path} was {'deleted' if now is None else 'edited'} since k8sboot wrote it"
    if role == "prepare":
        if found.swap_mib and not found.container:
            return "swap is on"
        # The role comments swap out of /etc/fstab in containers too: only `swapoff` is
        # beyond them.
        if found.fstab_swap:
            return f"/etc/fstab mounts swap again ({found.fstab_swap[0].split()[0]})"
        for name, value in SYSCTLS.items():
            current = found.sysctl(name)
            if current is not None and current != value:
                return f"{name} is {current}"
        entries = role_vars(cluster, host, found)["prepare"]["prepare_hosts_entries"]
        block = found.hosts_block(cluster.name)
        if block is None:
            return "/etc/hosts lost k8sboot's entries"
        if block != [f"{e['ip']} {e['name']}" for e in entries]:
            return "/etc/hosts' k8sboot entries were edited"
    elif role == "containerd":
        if found.package("containerd") is None:
            return "containerd is not installed"
    elif role == "kube_packages":
        version = str(cluster.release)
        for name in ("kubeadm", "kubelet", "kubectl"):
            package = found.package(name)
            if package is None or not package.version.startswith(f"{version}-"):
                have = package.version if package else "missing"
                return f"{name} is {have}, not {version}"
            if not package.held:
                return f"{name} is not held"
    return None


def scoped(hosts: list[Host], only: str | None) -> list[Host]:
    """`hosts`, or only the one named (`node add` sets up the new node, nothing else)."""
    return [h for h in hosts if only is None or h.name == only]


class NodeSetup(Step):
    title = "node setup (Ansible)"

    def wants(self, cluster: Cluster) -> Wanted:
        return Wanted(files=tuple(path for owned in OWNED_FILES.values() for path in owned))

    def __init__(self, only: str | None = None):
        self.only = only

    # Why a workflow's own steps already did a role's work on a host (the role is then
    # recorded as converged, not run), or None.
    def done_by_earlier_steps(self, ctx: Context, host: Host, role: str) -> str | None:
        return None

    def plan(self, ctx: Context) -> list[Action]:
        roles: list[tuple[str, tuple[str, ...]]] = []
        reasons: list[tuple[str, str, str]] = []
        host_vars: list[tuple[str, str]] = []
        recorded: list[tuple[str, tuple[str, ...]]] = []
        recorded_stamps: list[tuple[str, str]] = []
        why_recorded: set[str] = set()
        for host in scoped(ctx.cluster.hosts, self.only):
            found = ctx.host_facts(host)
            wanted = role_vars(ctx.cluster, host, found)
            stamps = {role: fingerprint(role, values) for role, values in wanted.items()}
            why = {role: drift(ctx.cluster, host, found, role, stamps[role]) for role in wanted}
            drifted = [role for role in wanted if why[role]]
            done = [self.done_by_earlier_steps(ctx, host, role) for role in drifted]
            if drifted and all(done):
                recorded.append((host.name, tuple(drifted)))
                recorded_stamps.append((host.name, json.dumps(stamps, sort_keys=True)))
                why_recorded.update(d for d in done if d)
            elif drifted:
                roles.append((host.name, tuple(drifted)))
                reasons += [(host.name, role, str(why[role])) for role in drifted]
                merged: dict[str, Any] = {"k8sboot_converge": drifted, "k8sboot_stamps": stamps}
                for role in drifted:
                    merged |= wanted[role]
                merged["prepare_swap"] = bool(found.swap_mib)
                host_vars.append((host.name, json.dumps(merged, sort_keys=True)))
        actions: list[Action] = []
        if recorded:
            actions.append(
                RecordConverged(
                    tuple(recorded), tuple(recorded_stamps), "; ".join(sorted(why_recorded))
                )
            )
        if roles:
            actions.append(Converge(tuple(roles), tuple(reasons), tuple(host_vars)))
        return actions


def service_faults(host: Host, found: HostFacts) -> list[tuple[str, str]]:
    """(service, what is wrong) for the services node setup installs on a Kubernetes node:
    containerd runs and starts at boot; the kubelet starts at boot, and runs once kubeadm
    has configured it (before that it has nothing to run). Services not installed yet are
    the roles' work."""
    if not (host.has("control-plane") or host.has("worker")):
        return []
    faults = []
    for service, installed, must_run in (
        ("containerd", found.package("containerd"), True),
        ("kubelet", found.package("kubelet"), found.kubeadm_configured),
    ):
        if installed is None:
            continue
        state = found.service(service)
        if must_run and not found.active(service):
            faults.append((service, f"{service} is {state.active}"))
        elif not found.enabled(service):
            faults.append((service, f"{service} is {state.enabled} at boot"))
    return faults


class Services(Step):
    """The services k8sboot set up, running and enabled: one systemctl per host, where a
    role run would take seconds per host to do the same."""

    title = "services"
    hosts_apart = True

    def __init__(self, only: str | None = None):
        self.only = only

    def plan(self, ctx: Context) -> list[Action]:
        actions: list[Action] = []
        for host in scoped(ctx.cluster.hosts, self.only):
            faults = service_faults(host, ctx.host_facts(host))
            if faults:
                names = " ".join(service for service, _ in faults)
                actions.append(
                    RunCommands(
                        ((host.name, f"systemctl enable --now {names}"),),
                        f"enable and start {names.replace(' ', ', ')} "
                        f"({'; '.join(why for _, why in faults)})",
                    )
                )
        return actions


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


@handles(Converge)
def converge(executor: Executor, action: Converge) -> Outcome:
    per_host = {host: json.loads(values) for host, values in action.host_vars}
    stamps = {host: values.pop("k8sboot_stamps") for host, values in per_host.items()}

    def on_event(event: dict) -> None:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_start" and data.get("host"):
            executor.progress(data["host"], data.get("task", ""))

    ctx = executor.ctx
    try:
        run_playbook(ctx.cluster, ctx.state, PLAYBOOK, per_host, {}, on_event)
    except PlaybookFailed as failed:
        _record_stamps(executor, per_host, stamps, set(per_host) - failed.hosts)
        raise
    _record_stamps(executor, per_host, stamps, set(per_host))
    return Outcome(action.hosts, reprobe=action.hosts)


@dataclass(frozen=True)
class RecordConverged(Action):
    """Roles whose work is found done on a host (an upgrade installed and held the packages
    node by node, as the role would have): their stamps recorded, without a role run."""

    roles: tuple[tuple[str, tuple[str, ...]], ...]  # (host, roles)
    stamps: tuple[tuple[str, str], ...]  # (host, JSON of its roles' fingerprints)
    why: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(host for host, _ in self.roles)

    def describe(self) -> str:
        roles = sorted({role for _, names in self.roles for role in names})
        return f"record {', '.join(roles)} as converged on {', '.join(self.hosts)} ({self.why})"


@handles(RecordConverged)
def record_converged(executor: Executor, action: RecordConverged) -> Outcome:
    per_host = {host: {"k8sboot_converge": list(roles)} for host, roles in action.roles}
    stamps = {host: json.loads(values) for host, values in action.stamps}
    _record_stamps(executor, per_host, stamps, set(per_host))
    # Nothing else changed there, and the stamps were read back as written: no probe again.
    return Outcome(action.hosts)


# Each named stamp's text, as the probe reads it (probes/host.py: stamps()).
_READ_STAMPS = (
    "import json, sys; "
    f"print(json.dumps({{r: open('{STAMPS_DIR}/' + r).read().strip() for r in sys.argv[1:]}}))"
)


def _record_stamps(
    executor: Executor,
    per_host: dict[str, dict],
    stamps: dict[str, dict[str, str]],
    hosts: set[str],
) -> None:
    """The fingerprint of each role a host converged, once every task of the run succeeded
    there, followed by the hashes of the files the role owns (as they are now): the probe
    compares both with what it finds to see drift. One command per host, over k8sboot's
    own connections (Ansible took a task round trip per role and host). Each stamp is read
    back in the same command into the host's facts, so that the steps after see it."""

    def record(connection: Connection) -> None:
        roles = per_host[connection.name]["k8sboot_converge"]
        commands = [f"mkdir -p {STAMPS_DIR}"]
        for role in roles:
            stamp = f"{STAMPS_DIR}/{role}"
            files = " ".join(shlex.quote(f) for f in OWNED_FILES[role])
            # A file the role did not write here (no repository file with local packages)
            # is left out of the stamp, and so is not watched.
            hashes = f"sha256sum -- {files} 2>/dev/null; " if files else ""
            commands.append(
                f"{{ echo {shlex.quote(stamps[connection.name][role])}; {hashes}true; }}"
                f" > {stamp}.tmp && mv {stamp}.tmp {stamp}"
            )
        read_back = f"python3 -c {shlex.quote(_READ_STAMPS)} {' '.join(roles)}"
        written = connection.run(
            " && ".join([*commands, read_back]), shown="record the converged roles' stamps"
        )
        found = executor.ctx.facts.hosts.get(connection.name)
        if found is not None:
            found.stamps_read_again(json.loads(written.stdout))

    raise_first(executor.transport.each(sorted(hosts), record))
