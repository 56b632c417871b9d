"""Which etcd tools a host has, and what they can do.

k8sboot runs the tools it installs (etcd's own release, linked into /usr/local/bin; see
k8sboot/versions.py), by path: a distribution's etcdctl 3.4 elsewhere on the PATH has no
etcdutl and cannot restore with --bump-revision and --mark-compacted. k8sboot asks the
host what its tools can do rather than guessing from a version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from k8sboot.transport import Askable
from k8sboot.versions import ETCD, ETCDCTL, ETCDUTL

# What etcd and Kubernetes recommend for a restore: move the revision far past anything
# a client may have cached, and mark the old revisions compacted so watches re-list.
BUMP_REVISION = 1_000_000_000

_DETECT = (
    f"ETCDCTL_API=3 {ETCDCTL} version 2>/dev/null | head -n 1; echo '--'; "
    f"{ETCDUTL} version 2>/dev/null | head -n 1; echo '--'; "
    f"{ETCDUTL} snapshot restore --help 2>&1 | grep -c -e --bump-revision -e --mark-compacted; "
    f"echo '--'; test -x {ETCD} && echo {ETCD} || true"
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
        return ETCDUTL if self.etcdutl else ETCDCTL

    def describe(self) -> str:
        parts = [f"etcdctl {self.etcdctl}" if self.etcdctl else "no etcdctl"]
        parts.append(f"etcdutl {self.etcdutl}" if self.etcdutl else "no etcdutl")
        return ", ".join(parts)

    def missing_restore_flags(self) -> str | None:
        """Why a restore with these tools would not be Kubernetes-correct, else None."""
        if self.bump_revision:
            return None
        have = f"etcdutl {self.etcdutl}" if self.etcdutl else "no etcdutl"
        return (
            f"{have} cannot restore with --bump-revision and --mark-compacted: the restored "
            "revision would be the snapshot's, so watchers that saw later revisions keep "
            "stale caches until they re-list; `k8sboot up` installs etcd's own tools"
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


def detect(connection: Askable) -> EtcdTools:
    result = connection.ask(_DETECT, check=False, timeout=60, shown="which etcd tools")
    return parse(result.stdout)
