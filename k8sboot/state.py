"""The per-cluster state directory on the operator's machine (mode 0700).

Pinned host keys, the fetched kubeconfig, run logs and Ansible artifacts, the lock and
the backup catalogue live here. Files that hold secrets are written 0600. None of it
belongs in version control: the directory ignores itself.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from k8sboot.errors import UserError


class StateDir:
    def __init__(self, root: Path):
        self.root = root

    def ensure(self) -> StateDir:
        private_dir(self.root)
        for sub in ("logs", "ansible"):
            private_dir(self.root / sub)
        _ignored_by_git(self.root)
        return self

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ansible(self) -> Path:
        return self.root / "ansible"


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 from the first byte on, and durably: on disk, data
    and name, before it returns (a crash leaves the old file or the new, never an empty
    one)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_secret_file(path: Path, text: str) -> None:
    """A new file holding a secret: 0600 from the first byte, durable, and never written
    over an existing one (that may be the only copy of a key). The directories it makes
    for it are 0700; those that exist are left as they are."""
    missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # whatever the umask
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(
            f"{path} exists; k8sboot never overwrites a file that holds a secret (move it "
            "away, or choose another path)"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the names in directory `path` durable (a new or renamed file counts only then)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


GITIGNORE = """\
# k8sboot's state: host keys, the admin kubeconfig, backups, the etcd CA key.
# Not for version control; to keep some of it there, edit this file (k8sboot never
# rewrites it).
*
"""


def _ignored_by_git(root: Path) -> None:
    """A .gitignore that ignores the whole directory, unless there is one already, or the
    directory is the top of a repository (a state directory set to a project's own)."""
    if (root / ".git").exists():
        return
    try:
        fd = os.open(root / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(GITIGNORE)


def run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
