"""etcd's own release on the hosts that need it (see k8sboot/versions.py for why).

Two steps of `up` share one action: before the external etcd members are configured,
their server and tools at `etcd.version`; once kubeadm has run, the control planes' tools
at the version kubeadm's etcd static pod runs (read from its manifest, after init or join
when the plan was made before them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from k8sboot.actions import Action, OnHost
from k8sboot.errors import MachineError, UserError
from k8sboot.executor import Executor, Outcome, handles
from k8sboot.kubeadm_node import ETCD_DATA_DIR, ETCD_MANIFEST
from k8sboot.spec import Cluster, Host
from k8sboot.step import Context, Step
from k8sboot.versions import (
    ETCD,
    ETCD_BIN_DIR,
    ETCDCTL,
    ETCDUTL,
    etcd_manifest_version,
    etcd_tarball_url,
    etcd_version_dir,
)

TOOLS = (ETCDCTL, ETCDUTL)
INSTALL_TIMEOUT = 900


@dataclass(frozen=True)
class InstallEtcd(OnHost):
    """etcd's release `version` on a host, its binaries linked into /usr/local/bin; version
    None: the version of the host's etcd static pod, read when the action runs."""

    version: str | None
    server: bool = False

    def describe(self) -> str:
        what = "etcd, etcdctl and etcdutl" if self.server else "etcdctl and etcdutl"
        version = self.version or "of the etcd kubeadm runs here"
        return f"install {what} {version} (etcd's release, checksum pinned)"


def _linked(ctx: Context, host: Host, paths: tuple[str, ...]) -> set[str | None]:
    found = ctx.host_facts(host)
    return {found.etcd_linked(p) for p in paths}


class ExternalEtcdRelease(Step):
    """etcd itself on external etcd hosts, before their members are configured."""

    title = "etcd release (external members)"
    hosts_apart = True

    def plan(self, ctx: Context) -> list[Action]:
        cluster = ctx.cluster
        if cluster.etcd.topology != "external":
            return []
        version = cluster.etcd_version
        return [
            InstallEtcd(h.name, version, server=True)
            for h in cluster.with_role("etcd")
            if _linked(ctx, h, (ETCD, *TOOLS)) != {version}
        ]


class ControlPlaneEtcdTools(Step):
    """etcdctl and etcdutl on the control planes, the version of the etcd they talk to."""

    title = "etcd tools (control planes)"
    hosts_apart = True

    def plan(self, ctx: Context) -> list[Action]:
        cluster = ctx.cluster
        actions: list[Action] = []
        for host in cluster.control_planes:
            if cluster.etcd.topology == "external":
                wanted: str | None = cluster.etcd_version
            else:  # kubeadm's etcd: known once its manifest is there
                wanted = ctx.host_facts(host).etcd_manifest_version
            if wanted is None or _linked(ctx, host, TOOLS) != {wanted}:
                actions.append(InstallEtcd(host.name, wanted))
        return actions


def _sha256(cluster: Cluster, version: str, arch: str) -> str:
    sha256 = cluster.etcd_sha256(version, arch)
    if sha256 is None:
        raise UserError(
            f"etcd.download.sha256: no checksum known for etcd {version} ({arch}); set "
            f"etcd.version: {version} and etcd.download.sha256.{arch}"
        )
    return sha256


@handles(InstallEtcd)
def install(executor: Executor, action: InstallEtcd) -> Outcome:
    ctx = executor.ctx
    cluster = ctx.cluster
    connection = executor.transport[action.host]
    version = action.version
    if version is None:
        manifest = connection.read_file(ETCD_MANIFEST)
        version = etcd_manifest_version(manifest.decode() if manifest else None)
        if version is None:
            raise MachineError(f"{action.host}: no etcd version in {ETCD_MANIFEST}")
    found = ctx.facts[action.host]
    arch = found.arch
    if arch is None:
        raise MachineError(f"{action.host}: etcd has no release for {found.machine}")
    args = {
        "url": etcd_tarball_url(cluster.etcd.download.url, version, arch),
        "sha256": _sha256(cluster, version, arch),
        "dir": str(etcd_version_dir(version)),
        "bin_dir": str(ETCD_BIN_DIR),
        "binaries": ["etcd", "etcdctl", "etcdutl"] if action.server else ["etcdctl", "etcdutl"],
        "server": action.server,
        "data_dir": ETCD_DATA_DIR,
    }
    body = resources.files("k8sboot.probes").joinpath("install_etcd.py").read_text()
    executor.progress(action.host, f"etcd {version} from {args['url']}")
    result = connection.run(
        "python3 -",
        stdin=f"ARGS = {args!r}\n{body}".encode(),
        timeout=INSTALL_TIMEOUT,
        shown=f"install etcd {version}",
    )
    done = json.loads(result.stdout.strip().splitlines()[-1])
    changed = done["downloaded"] or bool(done["linked"])
    return Outcome((action.host,) if changed else ())
