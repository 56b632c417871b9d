"""A 3-member etcd cluster with TLS (client and peer) forms across three lab machines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.lab.lab import Lab, Machine
from tests.lab.pki import CA

pytestmark = pytest.mark.lab

PKI = "/etc/etcd/k8sboot-test"
DATA = "/var/lib/etcd/k8sboot-test"
DEFAULTS = "/etc/default/etcd"
BACKUP = "/etc/default/etcd.k8sboot-test-orig"


def _etcdctl(endpoints: list[str]) -> str:
    # etcd 3.4: API v3 is the default; `endpoint health` prints its plain lines on stderr,
    # so read JSON.
    return (
        f"sudo ETCDCTL_API=3 etcdctl --endpoints={','.join(endpoints)} "
        f"--cacert={PKI}/ca.crt --cert={PKI}/client.crt --key={PKI}/client.key "
        "--dial-timeout=5s --command-timeout=10s"
    )


def _environment(member: Machine, members: list[Machine]) -> str:
    cluster = ",".join(f"{m.name}=https://{m.address}:2380" for m in members)
    settings = {
        "ETCD_NAME": member.name,
        "ETCD_DATA_DIR": DATA,
        "ETCD_LISTEN_PEER_URLS": f"https://{member.address}:2380",
        "ETCD_LISTEN_CLIENT_URLS": f"https://{member.address}:2379,https://127.0.0.1:2379",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"https://{member.address}:2380",
        "ETCD_ADVERTISE_CLIENT_URLS": f"https://{member.address}:2379",
        "ETCD_INITIAL_CLUSTER": cluster,
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": "k8sboot-lab-test",
        "ETCD_CERT_FILE": f"{PKI}/member.crt",
        "ETCD_KEY_FILE": f"{PKI}/member.key",
        "ETCD_TRUSTED_CA_FILE": f"{PKI}/ca.crt",
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_CERT_FILE": f"{PKI}/member.crt",
        "ETCD_PEER_KEY_FILE": f"{PKI}/member.key",
        "ETCD_PEER_TRUSTED_CA_FILE": f"{PKI}/ca.crt",
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


@pytest.fixture
def etcd_members(lab: Lab) -> Iterator[list[Machine]]:
    """Three machines with certificates and an etcd configuration (not started); etcd is
    stopped and every trace of it removed afterwards."""
    if len(lab.machines) < 3:
        lab.up(1, 2, 0)
    members = lab.machines[:3]
    ca = CA("k8sboot lab etcd CA")
    client = ca.issue("k8sboot-lab-client", server=False, client=True)
    for m in members:
        pair = ca.issue(m.name, dns=(m.name, "localhost"), ips=(m.address, "127.0.0.1"))
        lab.ssh(m.name, f"sudo test -e {BACKUP} || sudo cp -p {DEFAULTS} {BACKUP}")
        lab.put(m.name, ca.cert_pem, f"{PKI}/ca.crt")
        lab.put(m.name, pair.cert_pem, f"{PKI}/member.crt")
        lab.put(m.name, pair.key_pem, f"{PKI}/member.key", mode="0600")
        lab.put(m.name, client.cert_pem, f"{PKI}/client.crt")
        lab.put(m.name, client.key_pem, f"{PKI}/client.key", mode="0600")
        lab.put(m.name, _environment(m, members).encode(), DEFAULTS)
        lab.ssh(m.name, f"sudo chown -R etcd:etcd {PKI} && sudo rm -rf {DATA}")
    yield members
    for m in members:
        lab.ssh(
            m.name,
            f"sudo systemctl stop etcd; sudo systemctl reset-failed etcd; "
            f"sudo rm -rf {DATA} {PKI}; sudo mv -f {BACKUP} {DEFAULTS}",
            check=False,
        )


def test_three_member_tls_cluster_forms(lab: Lab, etcd_members: list[Machine]) -> None:
    members = etcd_members
    endpoints = [f"https://{m.address}:2379" for m in members]
    started = time.monotonic()
    # Type=notify: a member reports ready only once the cluster has quorum, so start all
    # without waiting on each.
    lab.ssh_all("sudo systemctl start --no-block etcd", [m.name for m in members])

    deadline = started + 60
    health: list[dict] = []
    while True:
        result = lab.ssh(
            members[0].name, _etcdctl(endpoints) + " endpoint health -w json", check=False
        )
        if result.ok:
            health = json.loads(result.stdout)
            if len(health) == 3 and all(h["health"] for h in health):
                break
        if time.monotonic() > deadline:
            logs = lab.ssh(
                members[0].name, "sudo journalctl -u etcd --no-pager | tail -30", check=False
            ).stdout
            pytest.fail(
                f"etcd cluster not healthy after 60 s: {result.stdout}{result.stderr}\n{logs}"
            )
        time.sleep(0.5)
    assert sorted(h["endpoint"] for h in health) == sorted(endpoints)

    listed = json.loads(
        lab.ssh(members[0].name, _etcdctl(endpoints) + " member list -w json").stdout
    )
    assert sorted(m["name"] for m in listed["members"]) == sorted(m.name for m in members)
    for member in listed["members"]:
        assert all(url.startswith("https://") for url in member["peerURLs"] + member["clientURLs"])

    # A write through one member is read back through another.
    first, last = endpoints[0], endpoints[-1]
    lab.ssh(members[0].name, _etcdctl([first]) + " put /k8sboot/lab written-on-first")
    got = lab.ssh(members[-1].name, _etcdctl([last]) + " get /k8sboot/lab --print-value-only")
    assert got.stdout.strip() == "written-on-first"

    # TLS is enforced: no answer without a client certificate, nothing on plain HTTP.
    no_cert = lab.ssh(
        members[1].name,
        f"sudo ETCDCTL_API=3 etcdctl --endpoints={endpoints[1]} --cacert={PKI}/ca.crt "
        "--dial-timeout=3s --command-timeout=5s get /k8sboot/lab",
        check=False,
    )
    assert not no_cert.ok
    plain = lab.ssh(
        members[1].name, f"curl -sS -m 5 http://{members[1].address}:2379/health", check=False
    )
    assert '"health":"true"' not in plain.stdout
