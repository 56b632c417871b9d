"""Planning cannot change a machine or the operator's state: every workflow's plan runs
against hosts that answer questions and fail on anything else, and leaves the state
directory and the backup catalogue as they were. Every action has a handler."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import k8sboot
from k8sboot import session, workflows
from k8sboot.actions import Action, OnHost, OnThisMachine, WriteFiles
from k8sboot.etcd import restore as etcd_restore
from k8sboot.etcd import restore_record, topology
from k8sboot.etcd import verify as etcd_verify
from k8sboot.etcd.catalogue import LocalStore, Manifest
from k8sboot.etcd.install import InstallEtcd
from k8sboot.etcd.restore_record import RestoreRecord
from k8sboot.etcd.verify import RecordIntegrity
from k8sboot.executor import _HANDLERS
from k8sboot.facts import NodeStatus, ProbeRequest
from k8sboot.nodes.drain import DrainOptions
from k8sboot.pipeline import Workflow
from k8sboot.transport import CommandResult, ReadOnlyHosts, Transport

from .builders import START, manifest, stored
from .conftest import load_data
from .factsdata import answered, context, converged_host
from .hacluster import CONTROL_PLANES as IPS
from .hacluster import ha_cluster

ETCD = "3.5.16"
CONTROL_PLANES = tuple(IPS)


class Wrote(AssertionError):
    pass


class AnswersOnly:
    """A host that answers questions (`ask`, `read_file`) and fails on anything that
    could change it; every attempt is recorded, so that no `except` in the code under
    test can hide one."""

    def __init__(self, name: str, cluster, writes: list[str]):
        self.name = name
        self.cluster = cluster
        self.writes = writes
        self.asked: list[str] = []

    def ask(self, command: str, **_: object) -> CommandResult:
        self.asked.append(command)
        return CommandResult(self.name, command, 0, self._answer(command).encode(), "", 0.0)

    def read_file(self, path: str, secret: bool = False) -> bytes | None:
        self.asked.append(f"read {path}")
        return None

    def _refuse(self, what: str) -> None:
        self.writes.append(f"{self.name}: {what}")
        raise Wrote(f"planning changed {self.name}: {what}")

    def run(self, command: str, **_: object) -> None:
        self._refuse(command)

    def write_file(self, path: str, *_: object, **__: object) -> None:
        self._refuse(f"write {path}")

    def download(self, path: str, *_: object, **__: object) -> None:
        self._refuse(f"download {path}")

    def _answer(self, command: str) -> str:
        members = topology.members(self.cluster)
        if "version 2>/dev/null" in command:  # etcd.tools.detect
            return (
                f"etcdctl version: {ETCD}\n--\netcdutl version: {ETCD}\n--\n2\n--\n"
                "/usr/local/bin/etcd\n"
            )
        if "member list" in command:
            return json.dumps(
                {
                    "members": [
                        {
                            "ID": i,
                            "name": h.name,
                            "peerURLs": [f"https://{h.ip}:2380"],
                            "clientURLs": [topology.endpoint(h)],
                        }
                        for i, h in enumerate(members, 1)
                    ]
                }
            )
        if "endpoint status" in command:
            (i, host) = next((i, h) for i, h in enumerate(members, 1) if h.ip in command)
            header = {"member_id": i, "revision": 9}
            status = {"header": header, "leader": 1, "version": ETCD, "dbSize": 4096}
            return json.dumps([{"Endpoint": topology.endpoint(host), "Status": status}])
        if "endpoint health" in command:
            return json.dumps([{"endpoint": topology.endpoint(h), "health": True} for h in members])
        if "alarm list" in command:
            return json.dumps({"alarms": []})
        if "get pods" in command or "get poddisruptionbudgets" in command:
            return json.dumps({"items": []})
        return ""  # systemctl is-enabled, systemd-analyze, ls of snapshots, grep of a quota


class AnswersOnlyTransport(dict):
    each = Transport.each  # the real fan-out, over these hosts

    @property
    def _connections(self) -> dict:
        return self


def labels(host) -> dict[str, str]:
    return {"node-role.kubernetes.io/control-plane": ""} if host.has("control-plane") else {}


def _files(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def lab(base: dict, tmp_path: Path, monkeypatch):
    base["backup"] = {"directory": str(tmp_path / "backups"), "schedule": "daily"}
    cluster = ha_cluster(base)
    store = LocalStore(tmp_path / "backups").ensure()
    good = stored(store, manifest("lab-1", START))
    failing = manifest("lab-2", START)
    failing.verification["test_restore"] = {"ok": True}  # an earlier verify passed
    stored(store, failing, b"y" * failing.file["size"])  # the right size, other bytes
    # A restore plans from a backup that passes the local check (tested on its own).
    monkeypatch.setattr(etcd_restore, "local_check", lambda *a: None)
    return cluster, store, good, failing


def _workflows(store: LocalStore, good: Manifest, failing: Manifest) -> dict[str, Workflow]:
    drain = DrainOptions()
    return {
        "up": workflows.up(),
        "node add": workflows.up(only="w1"),
        "reset": workflows.reset(purge_packages=False),
        "reset --purge-packages": workflows.reset(purge_packages=True),
        "node cordon": workflows.node_cordon("w1", True),
        "node uncordon": workflows.node_cordon("w1", False),
        "node drain": workflows.node_drain("w1", drain),
        "node remove (worker)": workflows.node_remove("w1", drain),
        "node remove (control plane)": workflows.node_remove("cp3", drain),
        "certs renew": workflows.certs_renew(),
        "upgrade": workflows.upgrade(drain),
        "etcd backup": workflows.etcd_backup(None),
        "etcd verify": workflows.etcd_verify(store, good),
        "etcd verify (a corrupt backup)": workflows.etcd_verify(store, failing),
        "etcd schedule": workflows.etcd_schedule(),
        "etcd pull": workflows.etcd_pull(),
        "etcd restore": workflows.etcd_restore(store, good, CONTROL_PLANES),
        "etcd defrag": workflows.etcd_defrag(0),
        "etcd alarms --disarm": workflows.etcd_disarm(),
    }


NAMES = list(_workflows(LocalStore(Path("/nonexistent")), *[manifest("x", START)] * 2))
# Whose planning needs a restore in progress: recorded in the state directory first.
RECORDED = {"etcd restore (resumed)", "etcd restore rollback"}


@pytest.mark.parametrize("name", [*NAMES, *sorted(RECORDED)])
def test_every_workflow_plans_without_changing_anything(
    lab, tmp_path: Path, monkeypatch, name: str
) -> None:
    cluster, store, good, failing = lab
    ctx = context(
        cluster,
        {h.name: converged_host(cluster, h.name) for h in cluster.hosts},
        tmp_path,
        {
            h.name: NodeStatus(h.name, True, "KubeletReady", "v1.33.1", h.ip, False, labels(h))
            for h in cluster.hosts
        },
    )
    if name == "etcd verify":  # a backup that passes the local check (tested on its own)
        monkeypatch.setattr(etcd_verify, "local_check", lambda *a: None)
    if name in RECORDED:
        record = RestoreRecord(
            "0badcafe", good.name, store.location, ["cp1", "cp2", "cp3"],
            ["cp1", "cp2", "cp3"], False, "", "stopped",
        )  # fmt: skip
        restore_record.write(ctx.state, record)
    flows = _workflows(store, good, failing) | {
        "etcd restore (resumed)": workflows.etcd_restore(store, good, CONTROL_PLANES),
        "etcd restore rollback": workflows.etcd_rollback("0badcafe"),
    }
    writes: list[str] = []
    hosts = AnswersOnlyTransport(
        {h.name: AnswersOnly(h.name, cluster, writes) for h in cluster.hosts}
    )
    ctx.view = ReadOnlyHosts(hosts)  # type: ignore[arg-type]
    # Only what this workflow's steps declare is probed: a step reading anything else fails.
    request = ProbeRequest.for_(step.wants(cluster) for step in flows[name].steps)
    ctx.facts.hosts = {n: answered(f, request) for n, f in ctx.facts.hosts.items()}
    before = _files(tmp_path)
    planned: list[Action] = []
    for step in flows[name].steps:
        planned += step.plan(ctx)
    assert writes == []
    assert _files(tmp_path) == before, "planning changed the state directory or the catalogue"
    if name == "etcd verify":
        assert [type(a).__name__ for a in planned] == ["RecordIntegrity", "TestRestore"]
    if name == "etcd verify (a corrupt backup)":  # the failure is recorded by the executor
        assert [type(a).__name__ for a in planned] == ["RecordIntegrity"]


def _subclasses(kind: type) -> set[type]:
    direct = set(kind.__subclasses__())
    return direct.union(*(_subclasses(k) for k in direct))


def test_every_action_type_has_a_handler() -> None:
    for module in pkgutil.walk_packages(k8sboot.__path__, "k8sboot."):
        # Every action type and handler; not the scripts that run on hosts.
        if not module.name.endswith("__main__") and ".probes." not in module.name:
            importlib.import_module(module.name)
    kinds = {k for k in _subclasses(Action) if k not in (OnHost, OnThisMachine)}
    missing = sorted(k.__qualname__ for k in kinds if k not in _HANDLERS)
    assert missing == []
    assert {InstallEtcd, RecordIntegrity, WriteFiles} <= kinds  # the search finds them


def test_a_read_only_commands_session_cannot_change_a_host(base: dict, tmp_path: Path) -> None:
    """health, certs check and kubeconfig (the admin's) get the view planning gets: a host
    through it reads and asks, and has nothing that runs a command or writes a file."""
    cluster = load_data(base).cluster
    cluster.state_dir = tmp_path / "state"
    with session.read_only(cluster, "health") as hosts:
        assert hosts.names == [h.name for h in cluster.hosts]
        host = hosts[cluster.hosts[0].name]
        assert hasattr(host, "ask") and hasattr(host, "read_file")
        for write in ("run", "write_file", "download"):
            assert not hasattr(host, write), write
