"""`k8sboot etcd` against real etcd (3.5, from Debian 13) in lab machines: stacked etcd on three
control planes behind kube-vip, a restore onto a new machine, then three control planes on
external etcd on three etcd hosts installed and run by k8sboot.

The cluster files list the lab's machines as plain SSH hosts (no Vagrant calls, so hosts can
take other roles: w1 becomes the new control plane of the restore onto a new machine). The
tests build on each other and run in order; the module leaves the lab reset.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8sboot.host_state import ETCD_SNAPSHOT_DIR
from tests.e2e.conftest import FIRST_SHAPE, K8sboot, SharedHA, events, finished
from tests.lab import etcd_release

BACKUP_DIR = "backups"


class Etcd:
    """The module's k8sboot runner, with cluster files written from the lab's machines."""

    def __init__(self, k8sboot: K8sboot):
        self.k = k8sboot
        self.lab = k8sboot.lab
        self.repo = yaml.safe_load(k8sboot.spec.read_text())["packages"]["url"]
        self.brought_up: dict[str, Any] = {}  # the first `up`'s final event

    def spec(self, layout: dict[str, list[str]], **extra: Any) -> None:
        hosts = []
        for name, roles in layout.items():
            machine = self.lab.machine(name)
            hosts.append(
                {
                    "name": name,
                    "address": machine.ssh_host,
                    "roles": roles,
                    "ssh": {
                        "user": machine.ssh_user,
                        "key": str(machine.ssh_key),
                        "port": machine.ssh_port,
                    },
                }
            )
        data = {
            "apiVersion": "k8sboot/v1alpha1",
            "kind": "Cluster",
            "name": "lab",
            "hosts": hosts,
            "packages": {"source": "mirror", "url": self.repo},
            "ssh": {"connectTimeout": 3},
            "backup": {"directory": BACKUP_DIR, **extra.pop("backup", {})},
            "etcd": {**etcd_release.cluster_settings(self.repo), **extra.pop("etcd", {})},
            **extra,
        }
        self.k.spec.write_text(yaml.safe_dump(data, sort_keys=False))

    @property
    def backups(self) -> Path:
        return self.k.workdir / BACKUP_DIR

    def run(self, *args: str, check: bool = True):
        return self.k.run(*args, check=check)

    def up(self) -> dict[str, Any]:
        return finished(events(self.run("up", "-o", "json").stdout))

    def json(self, *args: str, check: bool = True) -> Any:
        return json.loads(self.run(*args, "-o", "json", check=check).stdout)

    def notes(self, *args: str) -> list[str]:
        return [
            e["message"]
            for e in events(self.run(*args, "-o", "json").stdout)
            if e["event"] == "note"
        ]

    def latest(self) -> dict[str, Any]:
        return self.json("etcd", "list")["backups"][-1]

    def configmaps(self) -> dict[str, str]:
        items = json.loads(self.k.kubectl("get", "configmaps", "-o", "json").stdout)["items"]
        return {
            i["metadata"]["name"]: i["data"]["v"]
            for i in items
            if i["metadata"]["name"].startswith("e2e-")
        }

    def write(self, **values: str) -> None:
        for name, value in values.items():
            self.k.kubectl("create", "configmap", f"e2e-{name}", f"--from-literal=v={value}")

    def delete(self, *names: str) -> None:
        for name in names:
            self.k.kubectl("delete", "configmap", f"e2e-{name}")

    def killed_after(self, action: str, *args: str) -> list[dict[str, Any]]:
        """k8sboot, killed as soon as an action whose description starts with `action`
        has finished."""

        def at(event: dict[str, Any]) -> bool:
            return event["event"] == "action_finished" and event["action"].startswith(action)

        return self.k.killed(list(args), at)

    def keys(self) -> set[str]:
        """Every key in etcd but the ones the cluster rewrites by itself all the time."""
        listed = self.sudo(
            "cp1",
            "ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints https://127.0.0.1:2379 "
            "--cacert /etc/kubernetes/pki/etcd/ca.crt "
            "--cert /etc/kubernetes/pki/etcd/healthcheck-client.crt "
            "--key /etc/kubernetes/pki/etcd/healthcheck-client.key get '' --prefix --keys-only",
        ).stdout.split()
        return {k for k in listed if not k.startswith(("/registry/events/", "/registry/leases/"))}

    def sudo(self, machine: str, command: str, check: bool = True):
        # Single quotes: the login shell on the machine must not expand $(...) or $i first.
        return self.lab.ssh(machine, f"sudo sh -c {shlex.quote(command)}", check=check)


STACKED = {"cp1": ["control-plane"], "cp2": ["control-plane"], "cp3": ["control-plane"]}
EXTERNAL = {**STACKED, "etcd1": ["etcd"], "etcd2": ["etcd"], "etcd3": ["etcd"]}


@pytest.fixture(scope="module")
def etcd(k8sboot: K8sboot, ha: SharedHA) -> Etcd:
    ha.release()
    k8sboot.lab.up(*FIRST_SHAPE)  # etcd4-6 replace etcd1-3 once they are lost
    helper = Etcd(k8sboot)
    helper.spec(
        STACKED, controlPlaneEndpoint={"type": "kube-vip", "address": f"{k8sboot.lab.subnet}.10"}
    )
    helper.brought_up = helper.up()  # here, so that any one test can run on its own
    return helper


def test_stacked_cluster_is_healthy_with_three_members(etcd: Etcd) -> None:
    assert etcd.brought_up["ok"] is True
    health = etcd.json("etcd", "health")
    assert health["healthy"] is True and health["topology"] == "stacked"
    assert sorted(m["name"] for m in health["members"]) == ["cp1", "cp2", "cp3"]
    assert sum(m["leader"] for m in health["members"]) == 1
    release = etcd_release.release().version  # kubeadm's etcd as the lab runs it (3.5.16)
    assert all(m["version"] == release and m["quota"] == 2 * 1024**3 for m in health["members"])
    assert health["tools"] == f"etcdctl {release}, etcdutl {release}"
    members = etcd.json("etcd", "members")
    assert members["ok"] and not members["missing"]
    assert all(m["host"] == m["node"] == m["name"] for m in members["members"])
    assert all(len(m["id"]) > 8 and int(m["id"], 16) for m in members["members"])


def test_backup_list_verify_and_file_modes(etcd: Etcd) -> None:
    etcd.write(a="1", b="2")
    notes = etcd.notes("etcd", "backup")
    assert any("from cp2" in n or "from cp3" in n or "from cp1" in n for n in notes), notes
    backup = etcd.latest()
    assert backup["state"] == "checked" and backup["origin"] == "backup" and backup["keys"] > 0
    assert etcd.backups.stat().st_mode & 0o777 == 0o700
    for path in etcd.backups.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    manifest = json.loads((etcd.backups / f"{backup['name']}.json").read_text())
    assert manifest["source"]["member"] != "" and len(manifest["members"]) == 3
    data = (etcd.backups / manifest["file"]["name"]).read_bytes()
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]  # etcd's own checksum
    assert hashlib.sha256(data).hexdigest() == manifest["file"]["sha256"]
    for machine in STACKED:  # nothing left behind on the nodes
        left = etcd.sudo(machine, "ls -A /var/lib/k8sboot/etcd-backup 2>/dev/null || true").stdout
        assert left.strip() == "", (machine, left)
    etcd.run("etcd", "verify", backup["name"])
    assert etcd.latest()["state"] == "test-restored"
    verified = json.loads((etcd.backups / f"{backup['name']}.json").read_text())
    test = verified["verification"]["test_restore"]
    assert test["ok"] and test["revision"] == manifest["revision"]
    assert test["keys"] == manifest["keys"] and test["hash_kv"] == manifest["hash_kv"]


def test_a_backup_while_a_member_is_down_comes_from_a_healthy_one(etcd: Etcd) -> None:
    # Take down the member the last backup came from: the next one must come from another.
    last = json.loads((etcd.backups / f"{etcd.latest()['name']}.json").read_text())
    down = last["source"]["host"]
    aside = "/var/lib/k8sboot/e2e-aside"
    etcd.sudo(down, f"mkdir -p {aside} && mv /etc/kubernetes/manifests/etcd.yaml {aside}/")
    try:
        # The kubelet stops a static pod some time after its manifest goes: wait for that.
        stopped = (
            "for i in $(seq 60); do ss -Hltn 'sport = :2379' | grep -q . || exit 0; sleep 1; done;"
            " exit 1"
        )
        assert etcd.sudo(down, stopped, check=False).returncode == 0, f"etcd on {down} still up"
        health = etcd.run("etcd", "health", check=False)
        assert health.returncode == 1 and "UNHEALTHY" in health.stdout
        refused = etcd.run("etcd", "defrag", check=False)
        assert refused.returncode == 3 and "unhealthy" in refused.stderr
        notes = etcd.notes("etcd", "backup")
        assert any("backup lab-" in n for n in notes)
        source = json.loads((etcd.backups / f"{etcd.latest()['name']}.json").read_text())
        assert source["source"]["host"] not in (down, "")
    finally:
        etcd.sudo(down, f"mv {aside}/etcd.yaml /etc/kubernetes/manifests/")
    for _ in range(60):
        if etcd.run("etcd", "health", check=False).returncode == 0:
            break
    else:
        raise AssertionError("etcd did not become healthy again")


def _damaged_copy(etcd: Etcd, name: str, damage: str) -> Path:
    target = etcd.k.workdir / f"damaged-{damage}"
    target.mkdir(exist_ok=True)
    shutil.copy(etcd.backups / f"{name}.json", target)
    data = bytearray((etcd.backups / f"{name}.db").read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) - 4096 :]
    (target / f"{name}.db").write_bytes(bytes(data))
    return target / f"{name}.db"


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_corrupted_backup_is_refused_before_anything_stops(etcd: Etcd, damage: str) -> None:
    name = etcd.latest()["name"]
    path = _damaged_copy(etcd, name, damage)
    done = etcd.run("etcd", "restore", str(path), "--yes", check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "corrupt" in done.stderr and "Traceback" not in done.stderr
    for machine in STACKED:
        manifests = etcd.sudo(machine, "ls /etc/kubernetes/manifests").stdout.split()
        assert {"etcd.yaml", "kube-apiserver.yaml"} <= set(manifests), machine
    assert etcd.run("etcd", "verify", str(path), check=False).returncode == 1
    assert etcd.run("etcd", "health", check=False).returncode == 0


def test_an_encrypted_backup_is_unreadable_without_its_key(etcd: Etcd) -> None:
    key = etcd.k.workdir / "keys" / "backup.key"
    etcd.run("etcd", "keygen", str(key))
    assert key.stat().st_mode & 0o777 == 0o600
    endpoint = {"type": "kube-vip", "address": f"{etcd.lab.subnet}.10"}
    etcd.spec(STACKED, controlPlaneEndpoint=endpoint, backup={"encryptionKeyFile": str(key)})
    etcd.run("etcd", "backup")
    backup = etcd.latest()
    stored = (etcd.backups / backup["file"]).read_bytes()
    assert backup["file"].endswith(".db.enc") and backup["encrypted"]
    assert stored.startswith(b"K8SBETCD") and b"/registry/" not in stored
    assert hashlib.sha256(stored[:-32]).digest() != stored[-32:]
    assert (etcd.backups / backup["file"]).stat().st_mode & 0o777 == 0o600
    etcd.run("etcd", "verify", backup["name"])  # with its key: a real test restore
    etcd.spec(STACKED, controlPlaneEndpoint=endpoint)  # without it
    done = etcd.run("etcd", "verify", backup["name"], check=False)
    assert done.returncode == 1 and "encryptionKeyFile" in done.stderr
    other = etcd.k.workdir / "keys" / "other.key"
    etcd.run("etcd", "keygen", str(other))
    etcd.spec(STACKED, controlPlaneEndpoint=endpoint, backup={"encryptionKeyFile": str(other)})
    done = etcd.run("etcd", "verify", backup["name"], check=False)
    assert done.returncode == 1 and "another key" in done.stderr
    etcd.spec(STACKED, controlPlaneEndpoint=endpoint)


def test_restore_brings_back_exactly_the_snapshot(etcd: Etcd) -> None:
    etcd.write(c="3")
    etcd.run("etcd", "backup")
    backup = etcd.latest()
    snapshot = etcd.configmaps()
    assert snapshot == {"e2e-a": "1", "e2e-b": "2", "e2e-c": "3"}
    etcd.write(d="4")
    etcd.delete("a")
    assert etcd.configmaps() != snapshot
    served = max(m["revision"] for m in etcd.json("etcd", "health")["members"])
    assert served > backup["revision"]
    etcd.run("etcd", "restore", backup["name"], "--yes")
    assert etcd.configmaps() == snapshot
    assert set(etcd.k.nodes()) == {"cp1", "cp2", "cp3"} and all(etcd.k.nodes().values())
    health = etcd.json("etcd", "health")
    assert health["healthy"]
    # etcdutl 3.5 restored with --bump-revision 1000000000 --mark-compacted (issue 14.4):
    # the revision is past anything served before, and a watch from a revision served
    # before the restore is refused as compacted, so clients re-list instead of missing
    # what the restore undid (etcd v3.5.16 server/mvcc/kvstore.go, ErrCompacted;
    # etcdctl/ctlv3/command/watch_command.go: exit 5).
    assert min(m["revision"] for m in health["members"]) >= backup["revision"] + 1_000_000_000
    watch = etcd.sudo(
        "cp1",
        "timeout 20 /usr/local/bin/etcdctl --endpoints https://127.0.0.1:2379 "
        "--cacert /etc/kubernetes/pki/etcd/ca.crt "
        "--cert /etc/kubernetes/pki/etcd/healthcheck-client.crt "
        f"--key /etc/kubernetes/pki/etcd/healthcheck-client.key watch --rev={served} "
        "/registry/configmaps/default/e2e-a",
        check=False,
    )
    assert watch.returncode == 5, (watch.returncode, watch.stdout, watch.stderr)
    assert "required revision has been compacted" in watch.stderr
    for machine in STACKED:  # kept outside /var/lib/etcd, which kubeadm reset empties
        kept = etcd.sudo(machine, "ls /var/lib/k8sboot/etcd-before-restore/*").stdout.split()
        assert kept == ["member"], (machine, kept)
    listed = etcd.json("etcd", "list")["backups"]
    assert [b["origin"] for b in listed][-1] == "pre-restore"
    assert not (etcd.k.state / "etcd-restore.json").exists(), "confirmed: no longer recorded"


def _recorded(etcd: Etcd) -> dict[str, Any]:
    return json.loads((etcd.k.state / "etcd-restore.json").read_text())


def test_a_restore_killed_after_the_stop_or_the_swap_is_resumed(etcd: Etcd) -> None:
    """Issue 16: killed once the API servers were stopped, the restore left control planes
    that looked uninitialised; `up` then planned `kubeadm init` after `kubeadm reset -f`,
    which empties /var/lib/etcd (the data from before) and /etc/kubernetes/pki."""
    etcd.run("etcd", "backup")
    backup = etcd.json("etcd", "list")["backups"][-1]
    snapshot = etcd.configmaps()
    etcd.write(e="5")
    for moment in ("stop the API servers", "on cp1, cp2, cp3: keep the old data"):
        etcd.killed_after(moment, "etcd", "restore", backup["name"], "--yes")
        recorded = _recorded(etcd)
        assert recorded["backup"] == backup["name"]
        refused = etcd.run("up", check=False)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert f"`k8sboot etcd restore --rollback {recorded['tag']} --yes` undoes it" in (
            refused.stderr
        )
        assert etcd.run("node", "remove", "cp3", "--yes", check=False).returncode == 3
        etcd.run("etcd", "restore", backup["name"], "--yes")
        assert etcd.configmaps() == snapshot
        assert not (etcd.k.state / "etcd-restore.json").exists()
        assert all(etcd.k.nodes().values())
        etcd.write(e="5")


def test_a_rollback_brings_back_exactly_the_keys_from_before(etcd: Etcd) -> None:
    backup = next(b for b in reversed(etcd.json("etcd", "list")["backups"])
                  if b["origin"] == "backup")  # fmt: skip
    etcd.write(f="6")
    before, values = etcd.keys(), etcd.configmaps()
    assert "e2e-f" in values  # written after the backup: only the data from before has it
    etcd.killed_after("on cp1, cp2, cp3: keep the old data", "etcd", "restore", backup["name"],
                      "--yes")  # fmt: skip
    tag = _recorded(etcd)["tag"]
    etcd.run("etcd", "restore", "--rollback", tag, "--yes")
    assert etcd.keys() == before
    assert etcd.configmaps() == values
    assert not (etcd.k.state / "etcd-restore.json").exists()
    assert etcd.json("etcd", "health")["healthy"]
    for machine in STACKED:
        kept = etcd.sudo(machine, f"ls /var/lib/k8sboot/etcd-before-restore/{tag}").stdout
        assert kept.split() == ["member.restored"], (machine, kept)


def test_defrag_alarms_schedule_and_pull(etcd: Etcd) -> None:
    assert etcd.run("etcd", "defrag", "--pause", "0").returncode == 0
    assert etcd.json("etcd", "alarms")["alarms"] == []
    endpoint = {"type": "kube-vip", "address": f"{etcd.lab.subnet}.10"}
    key = etcd.k.workdir / "keys" / "schedule.key"
    etcd.run("etcd", "keygen", str(key))
    backup = {"schedule": "hourly", "encryptionKeyFile": str(key)}
    etcd.spec(STACKED, controlPlaneEndpoint=endpoint, backup=backup)
    etcd.run("etcd", "schedule")
    assert finished(events(etcd.run("etcd", "schedule", "-o", "json").stdout))["changed"] == {}
    etcd.sudo("cp1", "systemctl is-active k8sboot-etcd-snapshot.timer")
    etcd.sudo("cp1", "systemctl start k8sboot-etcd-snapshot.service")
    # Encrypted on the host (age, to a recipient derived from the key): no plain snapshot.
    kept = etcd.sudo("cp1", f"ls -A {ETCD_SNAPSHOT_DIR}").stdout.split()
    assert kept and all(name.endswith((".db.age", ".db.status")) for name in kept), kept
    plain = etcd.sudo("cp1", f"grep -rlaF /registry/ {ETCD_SNAPSHOT_DIR}", check=False)
    assert plain.stdout.strip() == "", plain.stdout
    etcd.run("etcd", "pull")
    pulled = etcd.latest()
    assert pulled["origin"] == "scheduled on cp1" and pulled["state"] == "checked"
    assert pulled["encrypted"]
    etcd.spec(STACKED, controlPlaneEndpoint=endpoint)
    etcd.run("etcd", "schedule")
    gone = etcd.sudo("cp1", "systemctl is-enabled k8sboot-etcd-snapshot.timer", check=False)
    assert not gone.ok
    assert not etcd.sudo("cp1", f"test -e {ETCD_SNAPSHOT_DIR}", check=False).ok


def test_restore_onto_a_new_machine(etcd: Etcd) -> None:
    etcd.run("etcd", "backup")
    backup = etcd.latest()
    snapshot = etcd.configmaps()
    etcd.run("reset", "--yes")
    etcd.spec({"w1": ["control-plane"]})  # the old control planes are gone; w1 is new
    assert etcd.up()["ok"] is True
    refused = etcd.run("etcd", "restore", backup["name"], "--yes", check=False)
    assert refused.returncode == 2 and "--onto w1" in refused.stderr
    notes = etcd.notes("etcd", "restore", backup["name"], "--onto", "w1", "--yes")
    assert etcd.configmaps() == snapshot
    nodes = etcd.k.nodes()
    assert nodes["w1"] is True and {"cp1", "cp2", "cp3"} <= set(nodes)
    assert any("not in the cluster file" in n and "cp1" in n for n in notes), notes
    members = etcd.json("etcd", "members")
    assert [m["peer_urls"] for m in members["members"]] == [[f"https://{etcd.lab.subnet}.101:2380"]]
    config = json.loads(
        etcd.k.kubectl(
            "-n", "kube-system", "get", "configmap", "kubeadm-config", "-o", "json"
        ).stdout
    )
    assert (
        f"controlPlaneEndpoint: {etcd.lab.subnet}.101:6443"
        in config["data"]["ClusterConfiguration"]
    )
    etcd.run("reset", "--yes")


def test_external_etcd_is_installed_backed_up_and_restored(etcd: Etcd) -> None:
    """Three control planes on external etcd: each join needs external etcd's
    certificates in the kubeadm-certs Secret, which kubeadm leaves out unless
    `upload-certs` is given the cluster's configuration (issue 14.1, kubernetes#84627)."""
    etcd.spec(
        EXTERNAL,
        etcd={"topology": "external"},
        controlPlaneEndpoint={"type": "kube-vip", "address": f"{etcd.lab.subnet}.10"},
    )
    assert etcd.up()["ok"] is True
    assert etcd.k.nodes() == {"cp1": True, "cp2": True, "cp3": True}
    release = etcd_release.release().version
    for member in ("etcd1", "etcd2", "etcd3"):  # etcd's release (issue 14.4), not Debian's
        shown = etcd.sudo(member, "/usr/local/bin/etcd --version; systemctl cat etcd").stdout
        assert f"etcd Version: {release}" in shown and "ExecStart=/usr/local/bin/etcd" in shown
    assert etcd.up()["changed"] == {}
    health = etcd.json("etcd", "health")
    assert health["healthy"]
    assert sorted(m["name"] for m in health["members"]) == ["etcd1", "etcd2", "etcd3"]
    modes = etcd.sudo("etcd1", "stat -c '%n %a %U:%G' /etc/etcd/pki/*.key").stdout
    assert all(line.endswith("640 root:etcd") for line in modes.splitlines()), modes
    ca = etcd.k.state / "etcd-pki" / "ca.key"
    assert ca.stat().st_mode & 0o777 == 0o600
    etcd.write(x="1")
    etcd.run("etcd", "backup")
    backup = etcd.latest()
    snapshot = etcd.configmaps()
    etcd.write(y="2")
    etcd.run("etcd", "restore", backup["name"], "--yes")
    assert etcd.configmaps() == snapshot == {"e2e-x": "1"}
    assert etcd.k.nodes() == {"cp1": True, "cp2": True, "cp3": True}


REPLACED = {**STACKED, "etcd4": ["etcd"], "etcd5": ["etcd"], "etcd6": ["etcd"]}


def test_after_losing_every_etcd_member_the_restore_goes_onto_new_hosts(etcd: Etcd) -> None:
    """Issue 16: with every etcd member dead, no command could run (each asked the API for
    its Nodes first); restore worked only once two old members were back."""
    etcd.run("etcd", "backup")
    backup = etcd.json("etcd", "list")["backups"][-1]
    snapshot = etcd.configmaps()
    for lost in ("etcd1", "etcd2", "etcd3"):
        etcd.lab.stop(lost, force=True)
    started = time.monotonic()
    health = etcd.run("etcd", "health", check=False)
    took = time.monotonic() - started
    print(f"etcd health with no member answering: exit {health.returncode} in {took:.1f}s")
    assert health.returncode != 0 and took < 30, health.stderr
    # The operator's cluster file now lists the new hosts instead of the lost ones.
    etcd.spec(
        REPLACED,
        etcd={"topology": "external"},
        controlPlaneEndpoint={"type": "kube-vip", "address": f"{etcd.lab.subnet}.10"},
    )
    etcd.run("up", check=False)  # prepares etcd on the new hosts; the API cannot answer yet
    for new in ("etcd4", "etcd5", "etcd6"):
        etcd.sudo(
            new,
            "test -x /usr/local/bin/etcd && test -s /etc/etcd/pki/server.crt "
            "&& test -s /etc/etcd/k8sboot.env",
        )
    notes = etcd.notes("etcd", "restore", backup["name"], "--onto", "etcd4,etcd5,etcd6", "--yes")
    assert any("no pre-restore snapshot" in n for n in notes), notes
    assert etcd.configmaps() == snapshot
    assert etcd.k.nodes() == {"cp1": True, "cp2": True, "cp3": True}
    health = etcd.json("etcd", "health")
    assert health["healthy"]
    assert sorted(m["name"] for m in health["members"]) == ["etcd4", "etcd5", "etcd6"]
    etcd.run("reset", "--yes")
    assert etcd.sudo("etcd4", "systemctl is-active etcd", check=False).stdout.strip() == "inactive"
    assert "member" not in etcd.sudo("etcd4", "ls /var/lib/etcd").stdout.split()
