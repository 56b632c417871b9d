"""k8sboot's Ansible adapter run for real on this machine (local connection, no SSH): its
artifacts are private, and Ctrl-C ends a run as it ends any k8sboot command."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sboot import ansible

from . import ansible_harness as harness

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run that succeeds, with extra variables (ansible-runner keeps them in env/)."""
    base = tmp_path_factory.mktemp("run")
    playbooks = harness.playbooks(base, [{"ansible.builtin.command": "true"}])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ansible, "data_dir", lambda _: playbooks)
        return harness.run(base, {"cp1": harness.LOCAL}, extravars={"k8sboot_test": "x"})


def test_artifacts_are_private(local_run: Path) -> None:
    entries = [local_run, *local_run.rglob("*")]
    names = {path.name for path in entries}
    assert {"hosts.yml", "extravars", "stdout", "stderr", "job_events", "fact_cache"} <= names
    loose = {
        str(path.relative_to(local_run)): oct(mode)
        for path in entries
        if (mode := path.stat().st_mode & 0o777) != (0o700 if path.is_dir() else 0o600)
    }
    assert loose == {}
