"""Hosts taken out with `node remove` while the cluster file still lists them.

The user is told to drop such a host from the spec; until they do, `up` must not join it
again behind their back. The state directory remembers the removal (name and address);
`up` leaves those hosts out and says so. The record goes when the host leaves the spec
(or comes back with another address: another machine), or with `node add`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from k8sboot.spec import Cluster
from k8sboot.state import StateDir

FILE = "removed.json"


def _path(state: StateDir) -> Path:
    return state.root / FILE


def load(state: StateDir) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(_path(state).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # a damaged record must not stop anything; it only protects


def _save(state: StateDir, records: dict[str, dict[str, Any]]) -> None:
    path = _path(state)
    if not records:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def record(state: StateDir, name: str, address: str | None) -> None:
    records = load(state)
    records[name] = {
        "address": address,
        "removed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _save(state, records)


def forget(state: StateDir, name: str) -> bool:
    records = load(state)
    if records.pop(name, None) is None:
        return False
    _save(state, records)
    return True


def exclude(cluster: Cluster, state: StateDir, forget: bool = True) -> tuple[Cluster, list[str]]:
    """The cluster without the hosts removed earlier, and a note for each one left out.
    Records of hosts gone from the spec are forgotten (unless `forget` is False)."""
    records = load(state)
    if not records:
        return cluster, []
    kept, notes, current = [], [], {}
    for host in cluster.hosts:
        entry = records.get(host.name)
        if entry is not None and entry.get("address") in (None, host.address):
            current[host.name] = entry
            notes.append(
                f"{host.name} was removed with `k8sboot node remove` ({entry.get('removed')}) "
                "and is left out: drop it from the cluster file, or run "
                f"`k8sboot node add {host.name}` to join it again"
            )
        else:
            kept.append(host)
    if forget and current != records:
        _save(state, current)  # hosts gone from the spec, or replaced: forget them
    if not notes:
        return cluster, []
    return cluster.model_copy(update={"hosts": kept}), notes
