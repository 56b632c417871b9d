from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from k8sboot.cluster.node_setup import fingerprint, role_vars
from k8sboot.kubeadm_node import KERNEL_MODULES, SYSCTLS
from k8sboot.resources import data_dir

from .conftest import load_data
from .factsdata import fresh

ROOT = Path(__file__).resolve().parents[2]


def test_roles_pass_ansible_lint_production_profile() -> None:
    lint = shutil.which("ansible-lint", path=str(Path(sys.executable).parent))
    assert lint, "ansible-lint is a dev dependency"
    done = subprocess.run(
        [lint, "--profile", "production", "--nocolor", "playbooks/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_entry_playbook_is_thin_and_tagged() -> None:
    (play,) = yaml.safe_load((data_dir("playbooks") / "node.yml").read_text())
    assert play["gather_facts"] is False
    roles = ["prepare", "containerd", "kube_packages"]
    assert [r["role"] for r in play["roles"]] == roles
    assert all(r["tags"] == [r["role"]] for r in play["roles"])
    for role in roles:
        tasks = yaml.safe_load(
            (data_dir("playbooks") / "roles" / role / "tasks/main.yml").read_text()
        )
        assert all(t.get("tags") for t in tasks), f"every task of {role} is tagged"


def test_fingerprints_follow_values_and_role_files() -> None:
    assert fingerprint("prepare", {"a": 1}) == fingerprint("prepare", {"a": 1})
    assert fingerprint("prepare", {"a": 1}) != fingerprint("prepare", {"a": 2})
    assert fingerprint("prepare", {}) != fingerprint("containerd", {})


def test_the_prepare_role_gets_the_kernel_settings_from_kubeadm_node(base: dict) -> None:
    """The role has no list of its own (its defaults are empty): what it loads and sets is
    what the probe checks, from one source."""
    cluster = load_data(base).cluster
    for host in cluster.hosts:
        prepare = role_vars(cluster, host, fresh(host.name, host.ip))["prepare"]
        assert prepare["prepare_modules"] == list(KERNEL_MODULES)
        assert prepare["prepare_sysctls"] == SYSCTLS
