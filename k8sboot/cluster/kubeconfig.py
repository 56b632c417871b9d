"""The admin kubeconfig, fetched into the state directory by `up`, printed or written by
`k8sboot kubeconfig`; and kubeconfigs for other users from `kubeadm kubeconfig user`."""

from __future__ import annotations

import contextlib
import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from k8sboot.actions import Action, OnHost
from k8sboot.errors import MachineError
from k8sboot.executor import Executor, Outcome, handles, read_required
from k8sboot.facts import Wanted
from k8sboot.kubeadm_node import ADMIN_CONF, CA_KEY
from k8sboot.render import upload_certs_file
from k8sboot.spec import Cluster
from k8sboot.state import create_secret_file, write_private
from k8sboot.step import Context, Step
from k8sboot.transport import CommandFailed, Connection, ReadOnlyHosts, Transport, Unreachable


class Kubeconfig(Step):
    title = "kubeconfig"

    def wants(self, cluster: Cluster) -> Wanted:
        return Wanted(files=(ADMIN_CONF,))

    def plan(self, ctx: Context) -> list[Action]:
        host = ctx.api_host
        remote = ctx.host_facts(host).file_hash(ADMIN_CONF)
        source = ctx.state.kubeconfig.with_name("kubeconfig.source")
        recorded = source.read_text().strip() if source.exists() else None
        if remote is not None and ctx.state.kubeconfig.exists() and recorded == remote:
            return []
        return [FetchKubeconfig(host.name, ctx.cluster.endpoint)]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FetchKubeconfig(OnHost):
    server: str

    def describe(self) -> str:
        return f"fetch admin kubeconfig (server https://{self.server}) into the state directory"


@handles(FetchKubeconfig)
def fetch_kubeconfig(executor: Executor, action: FetchKubeconfig) -> Outcome:
    ctx = executor.ctx
    raw = read_required(executor.transport[action.host], ADMIN_CONF, secret=True)  # a client key
    path = ctx.state.kubeconfig
    write_private(path, with_server(raw, action.server).encode())
    path.with_name("kubeconfig.source").write_text(digest(raw) + "\n")
    return Outcome((), f"kubeconfig written to {path}")


def with_server(raw: bytes, server: str) -> str:
    """admin.conf with `https://server` (the cluster's endpoint) as every cluster's server."""
    config = yaml.safe_load(raw)
    for cluster in config.get("clusters", []):
        cluster["cluster"]["server"] = f"https://{server}"
    return yaml.safe_dump(config)


# -- `k8sboot kubeconfig`: asked of the first control plane that can answer -----------------

NOT_HERE = 3  # the exit code of a command that finds what it needs missing on its host
T = TypeVar("T")


def admin_kubeconfig(cluster: Cluster, hosts: ReadOnlyHosts) -> str:
    raw = _from_a_control_plane(
        cluster,
        hosts,
        lambda connection: connection.read_file(ADMIN_CONF, secret=True),
        f"no {ADMIN_CONF}",
    )
    return with_server(raw, cluster.endpoint)


@dataclass(frozen=True)
class UserKubeconfig:
    text: str  # holds the user's private key
    warnings: tuple[str, ...]  # what kubeadm said on stderr


def user_kubeconfig(
    cluster: Cluster,
    transport: Transport,
    user: str,
    groups: tuple[str, ...],
    ttl: float | None,
) -> UserKubeconfig:
    """A kubeconfig for `user` (certificate CN) in `groups` (O), valid for `ttl` seconds
    (kubeadm's default without), from `kubeadm kubeconfig user` on a control plane that
    holds the cluster CA's key: the key never leaves it. kubeadm reads the cluster's
    configuration as `up` renders it, so the server is the cluster's endpoint."""
    flags = [f"--client-name={user}", *(f"--org={group}" for group in groups)]
    if ttl is not None:
        flags.append(f"--validity-period={max(1, round(ttl))}s")
    kubeadm = f"kubeadm kubeconfig user {shlex.join(flags)}"
    command = (
        f"[ -e {CA_KEY} ] || exit {NOT_HERE}; config=$(mktemp) && "
        'trap \'rm -f "$config"\' EXIT && cat > "$config" && '
        f'{kubeadm} --config "$config"'
    )

    def ask(connection: Connection) -> UserKubeconfig | None:
        # The cluster's kubeadm configuration as `up` renders it for this control plane.
        config = upload_certs_file(cluster, cluster.host(connection.name))
        try:
            result = connection.run(
                command,
                stdin=config.content.encode(),
                secret_output=True,  # the user's private key
                shown=kubeadm,
                timeout=120,
            )
        except CommandFailed as failed:
            if failed.result.exit_code == NOT_HERE:
                return None
            raise
        text = result.stdout
        try:
            users = yaml.safe_load(text)["users"]
            transport.log.mask.add(*(u["user"].get("client-key-data") for u in users))
        except (yaml.YAMLError, TypeError, KeyError):
            raise MachineError(
                f"{connection.name}: `kubeadm kubeconfig user` printed no kubeconfig"
            ) from None
        warnings = tuple(f"{connection.name}: {line}" for line in result.stderr.splitlines())
        return UserKubeconfig(text, warnings)

    return _from_a_control_plane(cluster, transport, ask, f"no {CA_KEY}")


def _from_a_control_plane(
    cluster: Cluster,
    hosts: Transport | ReadOnlyHosts,
    ask: Callable[[Any], T | None],
    missing: str,
) -> T:
    """The answer of the first control plane that gives one (None: it lacks `missing`);
    control planes that cannot be reached are passed over."""
    passed: list[str] = []
    for host in cluster.control_planes:
        try:
            answer = ask(hosts[host.name])
        except Unreachable as error:
            passed.append(str(error))
            continue
        if answer is not None:
            return answer
        passed.append(f"{host.name}: {missing} (kubeadm has not set it up there)")
    raise MachineError(f"no control plane to take the kubeconfig from: {'; '.join(passed)}")


def save(path: Path, text: str) -> bool:
    """`text` in a new file `path` (0600): False when the file holds it already. Any other
    file there is left as it is (UserError)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text() == text:
            return False
    create_secret_file(path, text)
    return True
