from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from k8sboot.spec import LoadedSpec, spec_from_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "inventories").glob("*.yaml"))

BASE = {
    "apiVersion": "k8sboot/v1alpha1",
    "kind": "Cluster",
    "name": "test",
    "hosts": [
        {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane"]},
        {"name": "w1", "address": "10.0.0.21", "roles": ["worker"]},
    ],
}


def load_data(data: dict, where: Path = Path("/work/cluster.yaml")) -> LoadedSpec:
    return spec_from_text(yaml.safe_dump(data), where)


@pytest.fixture
def base() -> dict:
    return yaml.safe_load(yaml.safe_dump(BASE))  # a deep copy each test may change


@pytest.fixture(autouse=True)
def _no_operator_ssh_files(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """The ssh_config and known_hosts of whoever runs the tests play no part in them."""
    from k8sboot import inventory, transport

    nothing = tmp_path_factory.getbasetemp() / "no-such-ssh-file"
    monkeypatch.setattr(inventory, "USER_SSH_CONFIG", str(nothing))
    monkeypatch.setattr(inventory, "SYSTEM_SSH_CONFIG", str(nothing))
    monkeypatch.setattr(transport, "USER_KNOWN_HOSTS", str(nothing))
