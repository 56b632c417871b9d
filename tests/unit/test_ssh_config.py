"""How a host is reached: the cluster file's `ssh`, then the operator's ssh_config (User,
Port, IdentityFile, HostName, ProxyJump), then root, 22 and the agent; `ssh.bastion` for
every host. One SSHTarget that all three SSH paths are built from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from k8sboot import inventory
from k8sboot.cli.app import cli
from k8sboot.errors import UserError
from k8sboot.inventory import SSHTarget, ssh_target
from k8sboot.spec import Cluster

from .conftest import BASE, load_data

SSH_CONFIG = """
Host cp1
    HostName 10.1.0.11
    User ubuntu
    Port 2200
    IdentityFile {dir}/id_cp1
    ProxyJump admin@jump.example.com:2222

Host jump.example.com
    IdentityFile {dir}/id_jump

Host w1
    ProxyJump none

Host w*
    User fallback
    ProxyJump nowhere.example.com
"""


def cluster_with(tmp_path: Path, ssh: dict, hosts: list[dict] | None = None) -> Cluster:
    for name in ("id_cp1", "id_jump", "id_cluster", "id_bastion"):
        (tmp_path / name).write_text("a key\n")
    (tmp_path / "ssh_config").write_text(SSH_CONFIG.format(dir=tmp_path))
    data = {**BASE, "ssh": {"configFile": "ssh_config", **ssh}}
    if hosts is not None:
        data["hosts"] = hosts
    return load_data(data, tmp_path / "cluster.yaml").cluster


NAMED = [
    {"name": "cp1", "address": "cp1", "nodeIP": "10.1.0.11", "roles": ["control-plane"]},
    {"name": "w1", "address": "w1", "nodeIP": "10.1.0.21", "roles": ["worker"]},
]


def test_the_ssh_config_gives_what_the_cluster_file_leaves_out(tmp_path: Path) -> None:
    cluster = cluster_with(tmp_path, {}, NAMED)
    assert ssh_target(cluster, cluster.host("cp1")) == SSHTarget(
        "cp1",
        "10.1.0.11",
        2200,
        "ubuntu",
        tmp_path / "id_cp1",
        jump=SSHTarget("jump.example.com", "jump.example.com", 2222, "admin", tmp_path / "id_jump"),
    )
    # `ProxyJump none` beats the wider Host w*, whose User applies.
    assert ssh_target(cluster, cluster.host("w1")) == SSHTarget("w1", "w1", 22, "fallback", None)


def test_what_the_cluster_file_says_wins_over_the_ssh_config(tmp_path: Path) -> None:
    cluster = cluster_with(tmp_path, {"user": "admin", "port": 22, "key": "id_cluster"}, NAMED)
    target = ssh_target(cluster, cluster.host("cp1"))
    assert (target.address, target.port, target.user, target.key) == (
        "10.1.0.11",
        22,
        "admin",
        tmp_path / "id_cluster",
    )


def test_the_users_own_ssh_config_is_read_when_the_cluster_file_names_none(
    tmp_path: Path, monkeypatch
) -> None:
    cluster = load_data(BASE, tmp_path / "cluster.yaml").cluster
    assert ssh_target(cluster, cluster.host("cp1")) == SSHTarget(
        "cp1", "10.0.0.11", 22, "root", None
    )
    (tmp_path / "config").write_text("Host 10.0.0.11\n    User ubuntu\n    Port 2222\n")
    monkeypatch.setattr(inventory, "USER_SSH_CONFIG", str(tmp_path / "config"))
    target = ssh_target(cluster, cluster.host("cp1"))
    assert (target.user, target.port) == ("ubuntu", 2222)


def test_the_bastion_in_the_cluster_file_wins_over_the_ssh_configs_proxy_jump(
    tmp_path: Path,
) -> None:
    bastion = {"address": "bastion.example.com", "user": "jumper", "key": "id_bastion"}
    cluster = cluster_with(tmp_path, {"bastion": bastion}, NAMED)
    expected = SSHTarget("bastion", "bastion.example.com", 22, "jumper", tmp_path / "id_bastion")
    assert ssh_target(cluster, cluster.host("cp1")).jump == expected
    assert ssh_target(cluster, cluster.host("w1")).jump == expected


def test_a_bastion_falls_back_on_the_ssh_config_then_the_clusters_user_and_key(
    tmp_path: Path,
) -> None:
    cluster = cluster_with(
        tmp_path,
        {"user": "ops", "key": "id_cluster", "bastion": {"address": "jump.example.com"}},
        NAMED,
    )
    # jump.example.com's Host block has an IdentityFile but no User.
    assert ssh_target(cluster, cluster.host("w1")).jump == SSHTarget(
        "bastion", "jump.example.com", 22, "ops", tmp_path / "id_jump"
    )
    other = cluster_with(tmp_path, {"key": "id_cluster", "bastion": {"address": "10.9.0.1"}}, NAMED)
    assert ssh_target(other, other.host("w1")).jump == SSHTarget(
        "bastion", "10.9.0.1", 22, "root", tmp_path / "id_cluster"
    )


def test_a_missing_ssh_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = {**BASE, "ssh": {"configFile": "nowhere"}}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(spec))
    cluster = load_data(spec, tmp_path / "cluster.yaml").cluster
    with pytest.raises(UserError, match=r"^ssh\.configFile: .*nowhere: no such file$"):
        ssh_target(cluster, cluster.host("cp1"))
    result = CliRunner().invoke(cli, ["inventory", "-f", str(tmp_path / "cluster.yaml")])
    assert result.exit_code == 2
    assert result.output == f"error: ssh.configFile: {tmp_path / 'nowhere'}: no such file\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("Host *\n    Port twenty\n", r"cp1: the ssh_config for 10\.0\.0\.11: .*'twenty'"),
        (
            "Host 10.0.0.11\n  ProxyJump b\nHost b\n  ProxyJump c\nHost c\n  ProxyJump b\n",
            r"^cp1: the ssh_config's ProxyJump for 10\.0\.0\.11 loops$",
        ),
    ],
)
def test_an_ssh_config_k8sboot_cannot_follow_is_one_line(
    tmp_path: Path, config: str, message: str
) -> None:
    (tmp_path / "ssh_config").write_text(config)
    spec = {**BASE, "ssh": {"configFile": "ssh_config"}}
    cluster = load_data(spec, tmp_path / "cluster.yaml").cluster
    with pytest.raises(UserError, match=message) as caught:
        ssh_target(cluster, cluster.host("cp1"))
    assert "\n" not in str(caught.value)


def test_a_starter_file_leaves_user_and_port_to_the_ssh_config(tmp_path: Path, monkeypatch) -> None:
    from k8sboot.spec import spec_from_text
    from k8sboot.starter import Starter, numbered_hosts

    (tmp_path / "config").write_text("Host 10.0.0.11\n    User ubuntu\n    Port 2222\n")
    monkeypatch.setattr(inventory, "USER_SSH_CONFIG", str(tmp_path / "config"))
    text = Starter("demo", "1.33.1", numbered_hosts(1, 1, ["10.0.0.11"])).render()
    cluster = spec_from_text(text, tmp_path / "cluster.yaml").cluster
    target = ssh_target(cluster, cluster.host("cp1"))
    assert (target.user, target.port) == ("ubuntu", 2222)
