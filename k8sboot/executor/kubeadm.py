"""kubeadm init and joins, with secrets that exist only as long as the join needs them."""

from __future__ import annotations

import shlex

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from k8sboot.actions import KubeadmInit, KubeadmJoin
from k8sboot.executor.core import Executor, Outcome, handles, raise_first, read_required
from k8sboot.kubeadm_node import CA_CERT
from k8sboot.render import (
    INIT_CONFIG,
    JOIN_CONFIG,
    JoinSecrets,
    kubeadm_file,
    upload_certs_file,
)
from k8sboot.steps.cluster import digest
from k8sboot.transport import Connection

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
    return Outcome((action.host,))


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
    return Outcome(action.joining)


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
