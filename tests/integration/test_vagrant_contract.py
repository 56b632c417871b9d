"""The Vagrantfile's contract with k8sboot: the machines file, addresses and SSH settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.lab.lab import REPO_ROOT, Lab, parse_ssh_config

pytestmark = pytest.mark.lab

EXPECTED_BASE = {"control-plane": 10, "etcd": 30, "worker": 100}


@pytest.fixture
def vagrant_lab(lab: Lab) -> Lab:
    if lab.backend != "vagrant":
        pytest.skip(f"the {lab.backend} lab backend has no Vagrant state")
    return lab


def test_machines_file_matches_the_running_machines(vagrant_lab: Lab) -> None:
    lab = vagrant_lab
    listing = json.loads(lab.machines_file.read_text())
    assert lab.machines_file.is_relative_to(lab.workdir), "lab state stays out of the repository"
    assert listing["version"] == 1
    assert listing["subnet"] == lab.subnet
    shape = lab.shape
    assert shape is not None
    assert [m["name"] for m in listing["machines"]] == shape.names()
    for entry in listing["machines"]:
        (role,) = entry["roles"]
        number = int(entry["name"].lstrip("cpew"))
        assert entry["address"] == f"{lab.subnet}.{EXPECTED_BASE[role] + number}"
        assert role == shape.role_of(entry["name"])

    # One `vagrant ssh-config` call for all machines: HostName is the private address.
    configs = parse_ssh_config(lab.vagrant("ssh-config").stdout)
    assert sorted(configs) == sorted(shape.names())
    for entry in listing["machines"]:
        config = configs[entry["name"]]
        assert config["hostname"] == entry["address"]
        assert config["user"] == "vagrant"
        assert Path(config["identityfile"].strip('"')).is_file()

    # One `vagrant status --machine-readable` call: all running with the lxc provider.
    states, providers = {}, {}
    for line in lab.vagrant("status", "--machine-readable").stdout.splitlines():
        parts = line.split(",", 3)
        if len(parts) == 4 and parts[2] == "state":
            states[parts[1]] = parts[3]
        if len(parts) == 4 and parts[2] == "provider-name":
            providers[parts[1]] = parts[3]
    assert states == {name: "running" for name in shape.names()}
    assert set(providers.values()) == {"lxc"}


def test_machines_have_their_address_name_and_every_peer_in_hosts(lab: Lab) -> None:
    lookups = "; ".join(f"getent ahostsv4 {n} | head -1" for n in lab.names)
    results = lab.ssh_all(
        f"hostname; ip -4 -o addr show dev eth0; ip route show default; {lookups}"
    )
    for m in lab.machines:
        out = results[m.name].stdout.splitlines()
        assert out[0] == m.name
        assert f" {m.address}/24 " in out[1], out[1]
        assert out[2].startswith(f"default via {lab.subnet}.1 "), out[2]
        resolved = [line.split()[0] for line in out[3:]]
        assert resolved == [p.address for p in lab.machines]


def test_lab_bridge_is_host_only(lab: Lab) -> None:
    # The host answers on the bridge (the machines' gateway) ...
    assert lab.ssh(lab.names[0], f"ping -c1 -W2 {lab.subnet}.1").ok
    # ... and routes nothing that arrives on it anywhere else (no forwarding, no IPv6).
    conf = Path("/proc/sys/net")
    assert (conf / f"ipv4/conf/{lab.bridge}/forwarding").read_text().strip() == "0"
    if (conf / f"ipv6/conf/{lab.bridge}").exists():
        assert (conf / f"ipv6/conf/{lab.bridge}/disable_ipv6").read_text().strip() == "1"


# --------------------------------------------------------------------- Vagrantfile alone
def _validate(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "Vagrantfile", project / "Vagrantfile")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K8SBOOT_", "VAGRANT_"))}
    env.update(VAGRANT_HOME=str(tmp_path / "vagrant-home"), VAGRANT_CHECKPOINT_DISABLE="1")
    env.update(settings)
    return subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_vagrantfile_validates_with_defaults(tmp_path: Path, vagrant_cli: None) -> None:
    result = _validate(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    listing = json.loads((tmp_path / "project/.vagrant/k8sboot-machines.json").read_text())
    assert listing == {
        "version": 1,
        "subnet": "192.168.56",
        "machines": [
            {"name": "cp1", "roles": ["control-plane"], "address": "192.168.56.11"},
            {"name": "w1", "roles": ["worker"], "address": "192.168.56.101"},
            {"name": "w2", "roles": ["worker"], "address": "192.168.56.102"},
        ],
    }


def test_vagrantfile_settings_and_relative_dotfile_path(tmp_path: Path, vagrant_cli: None) -> None:
    settings = {
        "K8SBOOT_CONTROL_PLANES": "3",
        "K8SBOOT_WORKERS": "4",
        "K8SBOOT_ETCD_HOSTS": "3",
        "K8SBOOT_SUBNET": "10.213.7",
        "VAGRANT_DOTFILE_PATH": "state/vagrant",
    }
    result = _validate(tmp_path, **settings)
    assert result.returncode == 0, result.stdout + result.stderr
    path = tmp_path / "project/state/vagrant/k8sboot-machines.json"
    listing = json.loads(path.read_text())
    got = {m["name"]: (m["roles"], m["address"]) for m in listing["machines"]}
    assert got == {
        "cp1": (["control-plane"], "10.213.7.11"),
        "cp2": (["control-plane"], "10.213.7.12"),
        "cp3": (["control-plane"], "10.213.7.13"),
        "etcd1": (["etcd"], "10.213.7.31"),
        "etcd2": (["etcd"], "10.213.7.32"),
        "etcd3": (["etcd"], "10.213.7.33"),
        "w1": (["worker"], "10.213.7.101"),
        "w2": (["worker"], "10.213.7.102"),
        "w3": (["worker"], "10.213.7.103"),
        "w4": (["worker"], "10.213.7.104"),
    }
    # Unchanged content is not rewritten.
    before = path.stat().st_mtime_ns
    assert _validate(tmp_path, **settings).returncode == 0
    assert path.stat().st_mtime_ns == before
    assert not (tmp_path / "project/.vagrant/k8sboot-machines.json").exists()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("K8SBOOT_WORKERS", "-1"), ("K8SBOOT_SUBNET", "10.213"), ("K8SBOOT_CP_MEMORY", "lots")],
)
def test_vagrantfile_rejects_bad_settings(
    tmp_path: Path, vagrant_cli: None, setting: str, value: str
) -> None:
    result = _validate(tmp_path, **{setting: value})
    assert result.returncode != 0
    assert setting in result.stdout + result.stderr
