"""The executor: the only code that changes anything on a machine.

It carries out actions through the SSH transport or an Ansible run. Secrets (tokens,
certificate keys) are created here at the last moment, travel on stdin, are registered
with the log masker, and are deleted again once the join they were for has run.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import singledispatchmethod

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from k8sboot.actions import (
    Action,
    ApplyManifest,
    Converge,
    FetchKubeconfig,
    KubeadmInit,
    KubeadmJoin,
    RunCommands,
    WaitNodesReady,
    WriteFiles,
)
from k8sboot.ansible import run_playbook
from k8sboot.errors import MachineError
from k8sboot.facts import ADMIN_CONF, KUBECTL, parse_nodes
from k8sboot.render import INIT_CONFIG, JOIN_CONFIG, JoinSecrets, kubeadm_file
from k8sboot.state import write_private
from k8sboot.steps.base import Context
from k8sboot.steps.cluster import digest
from k8sboot.steps.node_setup import PLAYBOOK
from k8sboot.transport import Connection

CA_CERT = "/etc/kubernetes/pki/ca.crt"
STAMPS = "/var/lib/k8sboot/stamps"
KUBEADM_TIMEOUT = 900

Progress = Callable[[str, str], None]  # (host, what is happening)


@dataclass(frozen=True)
class Outcome:
    changed: tuple[str, ...]  # hosts where something changed
    detail: str = ""


class Executor:
    def __init__(self, ctx: Context, progress: Progress | None = None):
        self.ctx = ctx
        self.progress = progress or (lambda host, message: None)

    @singledispatchmethod
    def execute(self, action: Action) -> Outcome:
        raise TypeError(f"no executor for {type(action).__name__}")

    # -- files and plain commands ----------------------------------------------------------

    @execute.register
    def _write(self, action: WriteFiles) -> Outcome:
        connection = self.ctx.transport[action.host]
        for file in action.files:
            self.progress(action.host, f"write {file.path}")
            connection.write_file(str(file.path), file.content.encode(), file.mode)
        if action.restart:
            self.progress(action.host, f"restart {action.restart}")
            connection.run(f"systemctl restart {shlex.quote(action.restart)}", timeout=180)
        return Outcome((action.host,))

    @execute.register
    def _commands(self, action: RunCommands) -> Outcome:
        by_host: dict[str, list[str]] = {}
        for host, command in action.commands:
            by_host.setdefault(host, []).append(command)

        def run_all(connection: Connection) -> None:
            for command in by_host[connection.name]:
                self.progress(connection.name, command)
                connection.run(command, timeout=KUBEADM_TIMEOUT)

        _raise_first(self.ctx.transport.each(by_host, run_all))
        return Outcome(tuple(by_host))

    # -- Ansible ---------------------------------------------------------------------------

    @execute.register
    def _converge(self, action: Converge) -> Outcome:
        per_host = {host: json.loads(values) for host, values in action.host_vars}

        def on_event(event: dict) -> None:
            data = event.get("event_data", {})
            if event.get("event") == "runner_on_start" and data.get("host"):
                self.progress(data["host"], data.get("task", ""))

        run_playbook(self.ctx.cluster, self.ctx.state, PLAYBOOK, per_host, {}, on_event)
        return Outcome(action.hosts)

    # -- kubeadm ---------------------------------------------------------------------------

    @execute.register
    def _init(self, action: KubeadmInit) -> Outcome:
        connection = self.ctx.transport[action.host]
        if action.reset_first:
            self.progress(action.host, "kubeadm reset -f (an earlier init stopped half-way)")
            connection.run("kubeadm reset -f", timeout=KUBEADM_TIMEOUT)
        file = kubeadm_file(self.ctx.cluster, self.ctx.cluster.host(action.host))
        connection.write_file(str(INIT_CONFIG), file.content.encode(), 0o600)
        self.progress(action.host, "kubeadm init")
        # Its output holds the init token and certificate key: never logged.
        connection.run(
            f"kubeadm init --config {INIT_CONFIG} --upload-certs",
            timeout=KUBEADM_TIMEOUT,
            secret_output=True,
        )
        return Outcome((action.host,))

    @execute.register
    def _join(self, action: KubeadmJoin) -> Outcome:
        api = self.ctx.transport[self.ctx.api_host.name]
        ca_hash = ca_cert_hash(_read(api, CA_CERT))
        if action.control_plane:
            for host in action.joining:  # one at a time: etcd membership changes singly
                key = self._upload_certs(api)
                with self._token(api, f"k8sboot: join {host}") as token:
                    self._join_one(host, JoinSecrets(token, ca_hash, key), action)
        else:
            with self._token(api, "k8sboot: join workers") as token:
                secrets = JoinSecrets(token, ca_hash)
                _raise_first(
                    self.ctx.transport.each(
                        action.joining, lambda c: self._join_one(c.name, secrets, action)
                    )
                )
        return Outcome(action.joining)

    def _join_one(self, host: str, secrets: JoinSecrets, action: KubeadmJoin) -> None:
        connection = self.ctx.transport[host]
        if host in action.reset_first:
            self.progress(host, "kubeadm reset -f (an earlier join stopped half-way)")
            connection.run("kubeadm reset -f", timeout=KUBEADM_TIMEOUT)
        file = kubeadm_file(self.ctx.cluster, self.ctx.cluster.host(host), secrets)
        connection.write_file(str(JOIN_CONFIG), file.content.encode(), 0o600)
        try:
            self.progress(host, "kubeadm join")
            connection.run(f"kubeadm join --config {JOIN_CONFIG}", timeout=KUBEADM_TIMEOUT)
        finally:
            connection.run(f"rm -f {JOIN_CONFIG}", check=False)

    def _upload_certs(self, api: Connection) -> str:
        self.progress(api.name, "upload control-plane certificates under a new key")
        result = api.run(
            "kubeadm init phase upload-certs --upload-certs", secret_output=True, timeout=300
        )
        key = result.stdout.strip().splitlines()[-1].strip()
        self.ctx.log.mask.add(key)
        return key

    def _token(self, api: Connection, description: str) -> _Token:
        return _Token(self, api, description)

    # -- the running cluster ---------------------------------------------------------------

    @execute.register
    def _apply(self, action: ApplyManifest) -> Outcome:
        connection = self.ctx.transport[action.host]
        for command in action.prerequisites:
            self.progress(action.host, command)
            connection.run(
                f"KUBECONFIG={ADMIN_CONF} {command}", timeout=KUBEADM_TIMEOUT, shown=command
            )
        path = str(action.file.path)
        connection.write_file(path, action.file.content.encode(), action.file.mode)
        self.progress(action.host, f"kubectl apply -f {path}")
        connection.run(f"{KUBECTL} apply -f {path}", timeout=300)
        stamp = digest(action.file.content.encode())
        connection.write_file(f"{STAMPS}/{action.stamp}", f"{stamp}\n".encode())
        return Outcome((action.host,))

    @execute.register
    def _wait(self, action: WaitNodesReady) -> Outcome:
        connection = self.ctx.transport[action.host]
        deadline = time.monotonic() + action.timeout
        while True:
            result = connection.run(
                f"{KUBECTL} get nodes -o json", check=False, timeout=60, shown="kubectl get nodes"
            )
            nodes = parse_nodes(json.loads(result.stdout)) if result.ok else {}
            waiting = {
                name: (nodes[name].reason if name in nodes else "not registered")
                for name in action.nodes
                if name not in nodes or not nodes[name].ready
            }
            self.ctx.nodes = nodes
            if not waiting:
                return Outcome(())
            if time.monotonic() > deadline:
                detail = "; ".join(f"{name}: {why}" for name, why in waiting.items())
                raise MachineError(f"nodes not Ready after {action.timeout:.0f}s: {detail}")
            self.progress(action.host, f"waiting for {', '.join(waiting)}")
            time.sleep(2)

    @execute.register
    def _kubeconfig(self, action: FetchKubeconfig) -> Outcome:
        connection = self.ctx.transport[action.host]
        raw = connection.read_file(ADMIN_CONF, secret=True)
        if raw is None:
            raise MachineError(f"{action.host}: {ADMIN_CONF} is missing")
        config = yaml.safe_load(raw)
        for cluster in config.get("clusters", []):
            cluster["cluster"]["server"] = f"https://{action.server}"
        path = self.ctx.state.kubeconfig
        write_private(path, yaml.safe_dump(config).encode())
        path.with_name("kubeconfig.source").write_text(digest(raw) + "\n")
        return Outcome((), f"kubeconfig written to {path}")


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


def _read(connection: Connection, path: str) -> bytes:
    content = connection.read_file(path)
    if content is None:
        raise MachineError(f"{connection.name}: {path} is missing")
    return content


def _raise_first(results: dict[str, object]) -> None:
    failures = {h: r for h, r in results.items() if isinstance(r, BaseException)}
    if len(failures) == 1:
        raise next(iter(failures.values()))
    if failures:
        raise MachineError("; ".join(f"{e}" for e in failures.values()))
