"""`up` and `plan` refuse to change the Kubernetes version of a running cluster; that is
`k8sboot upgrade`'s work (issue 18)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from k8sboot.cluster.upgrade import KeepVersion
from k8sboot.errors import UnsafeError
from k8sboot.workflows import up

from .conftest import load_data
from .factsdata import context, converged_host, fresh


def _at(base: dict, version: str):
    spec = copy.deepcopy(base)
    spec["kubernetes"] = {"version": version}
    return load_data(spec).cluster


def _running(base: dict, tmp_path: Path, version: str):
    cluster = _at(base, version)
    return context(
        cluster, {h.name: converged_host(cluster, h.name) for h in cluster.hosts}, tmp_path
    )


@pytest.mark.parametrize("wanted", ["1.33.2", "1.32.4", "1.30.13"])
def test_a_running_cluster_at_another_version_is_refused(
    base: dict, tmp_path: Path, wanted: str
) -> None:
    ctx = _running(base, tmp_path, "1.33.1")
    ctx.cluster = _at(base, wanted)
    with pytest.raises(UnsafeError) as refused:
        KeepVersion().plan(ctx)
    assert str(refused.value) == (
        f"the cluster file says Kubernetes {wanted}, but cp1, w1 run 1.33.1: `up` never "
        "changes the version of a running cluster; run `k8sboot upgrade`"
    )


def test_it_is_the_first_step_of_up_so_nothing_changes_before(base: dict, tmp_path: Path) -> None:
    assert isinstance(up().steps[0], KeepVersion)
    assert isinstance(up(only="w1").steps[0], KeepVersion)


def test_a_node_half_way_through_an_upgrade_is_named(base: dict, tmp_path: Path) -> None:
    ctx = _running(base, tmp_path, "1.33.1")
    ctx.cluster = _at(base, "1.33.2")
    for name in ("kubeadm", "kubelet"):
        ctx.facts.hosts["cp1"].data["packages"][name]["version"] = "1.33.2-1.1"
    ctx.facts.hosts["w1"].data["packages"]["kubeadm"]["version"] = "1.33.2-1.1"  # kubelet not yet
    with pytest.raises(UnsafeError, match=r"but w1 runs 1\.33\.1: "):
        KeepVersion().plan(ctx)


def test_new_clusters_and_new_hosts_come_up_at_the_files_version(
    base: dict, tmp_path: Path
) -> None:
    cluster = _at(base, "1.33.1")
    fresh_hosts = {h.name: fresh(h.name, h.ip) for h in cluster.hosts}
    assert KeepVersion().plan(context(cluster, fresh_hosts, tmp_path)) == []
    ctx = _running(base, tmp_path, "1.33.1")
    base = copy.deepcopy(base)
    base["hosts"].append({"name": "w2", "address": "10.0.0.22", "roles": ["worker"]})
    ctx.cluster = _at(base, "1.33.1")
    ctx.facts.hosts["w2"] = fresh(
        "w2", "10.0.0.22", packages={"kubelet": {"version": "1.30.1-1.1", "held": False}}
    )
    assert KeepVersion().plan(ctx) == []  # not configured by kubeadm: node setup installs 1.33.1
