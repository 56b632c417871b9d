"""`kubeadm init` of the first control plane and `kubeadm join` of the others and of
the workers, with tokens and certificate keys made at the last moment."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from k8sboot.actions import Action, OnHost
from k8sboot.cluster.kube_vip import kube_vip_manifest
from k8sboot.cluster.kubeconfig import digest
from k8sboot.errors import MachineError
from k8sboot.executor import Executor, Outcome, handles, raise_first, read_required
from k8sboot.kubeadm_node import CA_CERT
from k8sboot.render import (
    INIT_CONFIG,
    JOIN_CONFIG,
    JoinSecrets,
    RenderedFile,
    kubeadm_file,
    upload_certs_file,
)
from k8sboot.spec import Host
from k8sboot.step import Context, Step
from k8sboot.transport import Connection


class InitControlPlane(Step):
    title = "kubeadm init"

    def plan(self, ctx: Context) -> list[Action]:
        if ctx.initialised:
            return []
        host = ctx.cluster.first_control_plane
        found = ctx.host_facts(host)
        vip = None
        if ctx.cluster.control_plane_endpoint.type == "kube-vip":
            vip = kube_vip_manifest(ctx, host, during_init=True)
        if found.initialised_control_plane:
            # Its API answered (the pipeline asked it) without what init uploads last, or
            # refused admin.conf, whose RBAC binding init makes once the API answers.
            others = [h for h in ctx.cluster.hosts if h is not host and h.name in ctx.facts.hosts]
            joined = [h.name for h in others if ctx.host_facts(h).kubeadm_configured]
            if joined:  # joins come after init: this is no half-done init
                raise MachineError(
                    f"{host.name}: the API lacks kube-public/cluster-info or refuses admin.conf, "
                    f"yet {', '.join(joined)} joined already: repair that by hand (k8sboot "
                    "would only redo kubeadm init when nothing has joined)"
                )
            return [KubeadmInit(host.name, resume=True, kube_vip=vip)]
        # kubelet.conf or kubeadm's manifests: an init that stopped before it finished.
        leftovers = found.kubeadm_configured or "kube-apiserver.yaml" in found.manifests
        return [KubeadmInit(host.name, reset_first=leftovers, kube_vip=vip)]


def _to_join(
    ctx: Context, hosts: list[Host], title: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Hosts still to join, and those among them that an earlier join left half-done."""
    if ctx.initialised and not ctx.api.answers:
        # Whether a configured host's Node is registered is unknown: it is left as it is
        # (a join redone over a working node would reset it). A new host needs the API.
        configured = [h.name for h in hosts if ctx.host_facts(h).kubeadm_configured]
        new = [h.name for h in hosts if h.name not in configured]
        if new:
            raise ctx.api.needed(f"{title}: joining {', '.join(new)}")
        if configured:
            ctx.notes.append(
                f"{title}: {', '.join(configured)} left as is (kubeadm configured them; "
                "whether their Nodes are registered is unknown while the API does not answer)"
            )
        return (), ()
    # Before init (a dry run: a real run looked again once init had run), the first
    # control plane is the one init makes, not one to join.
    init_host = None if ctx.initialised else ctx.cluster.first_control_plane.name
    joining, reset = [], []
    for host in hosts:
        if host.name == init_host or (ctx.initialised and ctx.joined(host)):
            continue
        joining.append(host.name)
        if ctx.host_facts(host).kubeadm_configured:
            reset.append(host.name)
    return tuple(joining), tuple(reset)


class JoinControlPlanes(Step):
    title = "join control planes"

    def plan(self, ctx: Context) -> list[Action]:
        joining, reset = _to_join(ctx, ctx.cluster.control_planes, self.title)
        return [KubeadmJoin(joining, control_plane=True, reset_first=reset)] if joining else []


class JoinWorkers(Step):
    title = "join workers"

    def plan(self, ctx: Context) -> list[Action]:
        workers = [h for h in ctx.cluster.with_role("worker") if not h.has("control-plane")]
        joining, reset = _to_join(ctx, workers, self.title)
        return [KubeadmJoin(joining, control_plane=False, reset_first=reset)] if joining else []


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


KUBEADM_TIMEOUT = 900


# kubeadm init's phases up to kubelet-start (cmd/kubeadm/app/cmd/init.go, v1.30-v1.33).
BEFORE_THE_API_ANSWERS = (
    "preflight",
    "certs",
    "kubeconfig",
    "etcd",
    "control-plane",
    "kubelet-start",
)


@handles(KubeadmInit)
def init(executor: Executor, action: KubeadmInit) -> Outcome:
    ctx = executor.ctx
    connection = executor.transport[action.host]
    if action.reset_first:
        executor.progress(action.host, "kubeadm reset -f (an earlier init stopped half-way)")
        connection.run("kubeadm reset -f", timeout=KUBEADM_TIMEOUT)
    if action.kube_vip:
        vip = action.kube_vip
        connection.write_file(str(vip.path), vip.content.encode(), vip.mode)
    file = kubeadm_file(ctx.cluster, ctx.cluster.host(action.host))
    connection.write_file(str(INIT_CONFIG), file.content.encode(), 0o600)
    executor.progress(action.host, "kubeadm init")
    # The phases before wait-control-plane wrote files that are in place and running;
    # redoing them would fail preflight or restart the kubelet under a live API server.
    resume = f" --skip-phases={','.join(BEFORE_THE_API_ANSWERS)}" if action.resume else ""
    # Its output holds the init token and certificate key: never logged.
    connection.run(
        f"kubeadm init --config {INIT_CONFIG} --upload-certs{resume}",
        timeout=KUBEADM_TIMEOUT,
        secret_output=True,
    )
    return Outcome((action.host,), reprobe=(action.host,))


@handles(KubeadmJoin)
def join(executor: Executor, action: KubeadmJoin) -> Outcome:
    ctx = executor.ctx
    api = executor.transport[ctx.api_host.name]
    ca_hash = ca_cert_hash(read_required(api, CA_CERT))
    if action.control_plane:
        for host in action.joining:  # one at a time: etcd membership changes singly
            key = _upload_certs(executor, api)
            with _Token(executor, api, f"k8sboot: join {host}") as token:
                _join_one(executor, host, JoinSecrets(token, ca_hash, key), action)
    else:
        with _Token(executor, api, "k8sboot: join workers") as token:
            secrets = JoinSecrets(token, ca_hash)
            raise_first(
                executor.transport.each(
                    action.joining, lambda c: _join_one(executor, c.name, secrets, action)
                )
            )
    return Outcome(action.joining, reprobe=action.joining)


def _join_one(executor: Executor, host: str, secrets: JoinSecrets, action: KubeadmJoin) -> None:
    ctx = executor.ctx
    connection = executor.transport[host]
    if host in action.reset_first:
        executor.progress(host, "kubeadm reset -f (an earlier join stopped half-way)")
        connection.run("kubeadm reset -f", timeout=KUBEADM_TIMEOUT)
    file = kubeadm_file(ctx.cluster, ctx.cluster.host(host), secrets)
    connection.write_file(str(JOIN_CONFIG), file.content.encode(), 0o600)
    try:
        executor.progress(host, "kubeadm join")
        connection.run(f"kubeadm join --config {JOIN_CONFIG}", timeout=KUBEADM_TIMEOUT)
    finally:
        connection.run(f"rm -f {JOIN_CONFIG}", check=False)


def _upload_certs(executor: Executor, api: Connection) -> str:
    executor.progress(api.name, "upload control-plane certificates under a new key")
    cluster = executor.ctx.cluster
    config = upload_certs_file(cluster, cluster.host(api.name))
    api.write_file(str(config.path), config.content.encode(), config.mode)
    result = api.run(
        f"kubeadm init phase upload-certs --upload-certs --config {config.path}",
        secret_output=True,
        timeout=300,
    )
    key = result.stdout.strip().splitlines()[-1].strip()
    executor.ctx.log.mask.add(key)
    return key


class _Token:
    """A bootstrap token that exists only for the duration of a `with` block."""

    def __init__(self, executor: Executor, api: Connection, description: str):
        self.executor = executor
        self.api = api
        self.description = description
        self.token = ""

    def __enter__(self) -> str:
        self.executor.progress(self.api.name, "create a short-lived bootstrap token")
        result = self.api.run(
            f"kubeadm token create --ttl 15m0s --description {shlex.quote(self.description)}",
            secret_output=True,
            timeout=120,
        )
        self.token = result.stdout.strip().splitlines()[-1].strip()
        self.executor.ctx.log.mask.add(self.token, self.token.split(".")[-1])
        return self.token

    def __exit__(self, *exc: object) -> None:
        token_id = self.token.split(".")[0]  # the id alone is not secret
        self.api.run(f"kubeadm token delete {shlex.quote(token_id)}", check=False, timeout=120)


def ca_cert_hash(pem: bytes) -> str:
    """kubeadm's discovery hash: sha256 of the CA's DER SubjectPublicKeyInfo."""
    key = x509.load_pem_x509_certificate(pem).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + digest(der)
