"""The record of an `etcd restore` that has started to stop the control plane: written on
the operator's machine before anything stops, removed once the restore is confirmed or
rolled back. While it exists the cluster is between two states, and `up` (which would see
control planes without their static pods and plan `kubeadm init`, whose `kubeadm reset`
empties /var/lib/etcd and /etc/kubernetes/pki), `reset` and `node remove` refuse to run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from k8sboot.errors import UnsafeError, UserError
from k8sboot.host_state import ETCD_KEPT_DIR
from k8sboot.state import StateDir, write_private

FILE = "etcd-restore.json"


def kept_dir(tag: str) -> str:
    return f"{ETCD_KEPT_DIR}/{tag}"


@dataclass
class RestoreRecord:
    tag: str
    backup: str
    location: str  # of the catalogue that holds the backup
    targets: list[str]  # the etcd hosts restored into
    apiservers: list[str]
    external: bool
    etcd_servers: str  # the API servers' new --etcd-servers; "" keeps theirs
    phase: str  # the last step done: stopping, stopped, swapped, etcd started, API started
    pre_restore: str | None = None  # the snapshot taken first: held until confirmed

    def finish(self) -> str:
        return f"`k8sboot etcd restore {self.backup} --yes` finishes it"

    def undo(self) -> str:
        return f"`k8sboot etcd restore --rollback {self.tag} --yes` undoes it"

    def how(self) -> str:
        return (
            f"the restore of {self.backup} (tag {self.tag}) is recorded as in progress "
            f"({self.phase}): {self.finish()}; {self.undo()} (the data from before is kept in "
            f"{kept_dir(self.tag)} on {', '.join(self.targets)})"
        )


def read(state: StateDir) -> RestoreRecord | None:
    path = state.root / FILE
    try:
        data = json.loads(path.read_bytes())
        return RestoreRecord(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise UserError(
            f"{path}: unreadable record of a restore in progress ({error}); check the hosts' "
            f"{ETCD_KEPT_DIR} and fix or remove the file"
        ) from None


def write(state: StateDir, record: RestoreRecord) -> None:
    write_private(state.root / FILE, json.dumps(asdict(record), indent=2).encode() + b"\n")


def clear(state: StateDir) -> None:
    (state.root / FILE).unlink(missing_ok=True)


def refuse_during_restore(state: StateDir) -> None:
    """A workflow guard: nothing that would plan over a half-restored cluster runs."""
    record = read(state)
    if record is not None:
        raise UnsafeError(f"refusing to run: {record.how()}")
