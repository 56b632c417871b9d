"""Which etcd tools a host has, and what they can do.

etcdctl 3.4 (Debian 12, Ubuntu 22.04/24.04) has no etcdutl: snapshot status and restore
are etcdctl subcommands there, and a restore cannot bump the revision or mark it
compacted. etcd 3.5 adds etcdutl; `--bump-revision` and `--mark-compacted` arrived in
later 3.5 releases and 3.6. k8sboot asks the host rather than guessing from a version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from k8sboot.transport import Connection

# What etcd and Kubernetes recommend for a restore: move the revision far past anything
# a client may have cached, and mark the old revisions compacted so watches re-list.
BUMP_REVISION = 1_000_000_000

_DETECT = (
    "ETCDCTL_API=3 etcdctl version 2>/dev/null | head -n 1; echo '--'; "
    "etcdutl version 2>/dev/null | head -n 1; echo '--'; "
    "etcdutl snapshot restore --help 2>&1 | grep -c -e --bump-revision -e --mark-compacted; "
    "echo '--'; command -v etcd || true"
)


@dataclass(frozen=True)
class EtcdTools:
    etcdctl: str | None  # version, or None when missing
    etcdutl: str | None
    bump_revision: bool  # etcdutl snapshot restore has --bump-revision and --mark-compacted
    etcd: str | None = None  # path of an etcd server binary on the host, if any

    @property
    def offline(self) -> str:
        """The tool for snapshot files (status, restore): etcdutl where there is one."""
        return "etcdutl" if self.etcdutl else "etcdctl"

    def describe(self) -> str:
        parts = [f"etcdctl {self.etcdctl}" if self.etcdctl else "no etcdctl"]
        parts.append(f"etcdutl {self.etcdutl}" if self.etcdutl else "no etcdutl")
        return ", ".join(parts)

    def missing_restore_flags(self) -> str | None:
        """The warning a restore gives when it cannot bump the revision, else None."""
        if self.bump_revision:
            return None
        have = f"etcdutl {self.etcdutl}" if self.etcdutl else f"etcdctl {self.etcdctl} (no etcdutl)"
        return (
            f"{have} cannot restore with --bump-revision and --mark-compacted: the restored "
            "revision is the snapshot's, so watchers that saw later revisions keep stale "
            "caches until they re-list (restart controllers and kubelets if in doubt); "
            "install etcdutl 3.5.x (x >= 13) or 3.6 on the control planes to avoid this"
        )


def _version(line: str) -> str | None:
    found = re.search(r"version:\s*([0-9][\w.+-]*)", line)
    return found.group(1) if found else None


def parse(output: str) -> EtcdTools:
    parts = [*output.split("--\n"), "", "", "", ""]
    flags = parts[2].strip().splitlines()
    count = int(flags[-1]) if flags and flags[-1].strip().isdigit() else 0
    etcd = parts[3].strip() or None
    return EtcdTools(_version(parts[0]), _version(parts[1]), count >= 2, etcd)


def detect(connection: Connection) -> EtcdTools:
    result = connection.run(_DETECT, check=False, timeout=60, shown="which etcd tools")
    return parse(result.stdout)
