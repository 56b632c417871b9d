"""The state directory holds host keys, the admin kubeconfig, backups and the etcd CA key:
git never offers them for a commit, and a .gitignore of the user's own is left alone.
Real git is the judge, with no user or system configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from k8sboot.cli.app import cli
from k8sboot.state import StateDir

SECRETS = ("kubeconfig", "known_hosts", "backups/test-20250101T000000Z.db", "etcd-pki/ca.key")


def git(repository: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=repository,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def untracked(repository: Path) -> set[str]:
    """What `git add -A` would add."""
    status = git(repository, "status", "--porcelain", "--untracked-files=all")
    return {line[3:] for line in status.splitlines()}


def fill(state: Path) -> None:
    for name in SECRETS:
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_text("secret\n")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    return tmp_path


def test_a_new_state_directory_is_ignored_by_git(repository: Path) -> None:
    state = StateDir(repository / ".k8sboot" / "test").ensure().root
    fill(state)
    (repository / "cluster.yaml").write_text("kind: Cluster\n")
    assert untracked(repository) == {"cluster.yaml"}
    assert (state / ".gitignore").stat().st_mode & 0o777 == 0o600


def test_only_a_state_directory_without_gitignore_gets_one(repository: Path) -> None:
    own = repository / "own"
    own.mkdir()
    (own / ".gitignore").write_text("*.db\n")
    for state in (own, repository / "new", repository):
        StateDir(state).ensure()
    fill(own)
    fill(repository / "new")
    assert (own / ".gitignore").read_text() == "*.db\n"
    assert not (repository / ".gitignore").exists()  # the top of a repository: never
    assert {path.split("/")[0] for path in untracked(repository)} == {"own"}


def test_init_makes_the_state_directory_ignored_by_git(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repository)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    result = CliRunner().invoke(cli, ["init", "--name", "lab"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    state = repository / ".k8sboot" / "lab"
    assert f"goes to {state}, which git ignores" in result.output
    fill(state)
    assert untracked(repository) == {"cluster.yaml"}
