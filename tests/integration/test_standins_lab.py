"""The Kubernetes stand-ins inside lab machines (issue 4's "done when", in the lab).

One module-scoped cluster on a lab of its own (3 control planes + 2 workers, plain LXC
machines; index K8SBOOT_STANDINS_LAB_INDEX, default 6, so that it never meets the session
lab (0), the coexistence test's (session + 1) or the E2E lab (2)), brought up the way
k8sboot does it, with k8sboot's own rendered files. With no Vagrant call it needs no Vagrant
machine lock, and CI runs it beside the Vagrant labs' tests (.ci/test).

- the stand-in packages served as a flat apt repository on the lab's bridge, installed with
  a deb822 source and `apt-get install kubeadm=1.33.1-* kubelet=... kubectl=...`, held;
- containerd configured from k8sboot's template; kube-vip's static pod (super-admin.conf
  while kubeadm init runs, admin.conf afterwards) with the VIP 10.213.<index>.10 as the
  control-plane endpoint;
- `kubeadm init --config /etc/k8sboot/kubeadm-init.yaml --upload-certs` on cp1, each further
  control plane joined with a fresh token and `kubeadm init phase upload-certs` key created
  right before, both workers joined with one short-lived token, flannel applied.

Then the real kubectl (inside a machine, and on this machine through the VIP) sees 5 Ready
nodes; a real 3-member etcd runs at kubeadm's paths; a PDB blocks a drain with kubectl's own
message; moving static pod manifests away stops their pods and moving them back starts
them; `kubeadm reset -f` removes a control plane's etcd member; an expired certificate key
makes a control-plane join fail like upstream; the VIP moves when its holder is stopped.

About 5 minutes; the lab is destroyed at the end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from k8sboot import render
from k8sboot.spec import spec_from_text
from tests.lab import debs
from tests.lab.lab import Lab, LabError, Result
from tests.lab.plugin import REPO_PORT
from tests.lab.standins import workloads

pytestmark = [pytest.mark.lab, pytest.mark.slow]

VERSION = "1.33.1"
LAB_INDEX = int(os.environ.get("K8SBOOT_STANDINS_LAB_INDEX", "6"))
CONTROL_PLANES = ("cp1", "cp2", "cp3")
WORKERS = ("w1", "w2")
ADMIN = "/etc/kubernetes/admin.conf"
KUBECTL = f"sudo kubectl --kubeconfig {ADMIN}"
ETCDCTL = (
    "sudo ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 "
    "--cacert=/etc/kubernetes/pki/etcd/ca.crt "
    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
    "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key "
    "--dial-timeout=5s --command-timeout=10s"
)
HOST_KUBECTL = next(
    (
        p
        for p in ("/usr/lib/google-cloud-sdk/bin/kubectl.1.33", "/usr/bin/kubectl")
        if Path(p).exists()
    ),
    "kubectl",
)
KUBELET_STATE = "systemctl show kubelet -p UnitFileState -p ActiveState -p SubState -p Result"


def cluster_file(subnet: str, url: str) -> str:
    hosts = "\n".join(
        f"  - {{name: {name}, address: {subnet}.{address}, roles: [{role}]}}"
        for name, address, role in (
            ("cp1", 11, "control-plane"),
            ("cp2", 12, "control-plane"),
            ("cp3", 13, "control-plane"),
            ("w1", 101, "worker"),
            ("w2", 102, "worker"),
        )
    )
    return (
        "apiVersion: k8sboot/v1alpha1\nkind: Cluster\nname: standins\n"
        f'kubernetes: {{version: "{VERSION}"}}\n'
        f"hosts:\n{hosts}\n"
        f"controlPlaneEndpoint: {{type: kube-vip, address: {subnet}.10}}\n"
        f'packages: {{source: mirror, url: "{url}"}}\n'
    )


def apt_source(url: str) -> str:
    # What k8sboot's kube_packages role writes for an unsigned mirror.
    return f"Types: deb\nURIs: {url}\nSuites: /\nTrusted: yes\n"


@dataclass
class StandinCluster:
    lab: Lab
    url: str
    workdir: Path
    spec: object = None
    vip: str = ""
    observed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        text = cluster_file(self.lab.subnet, self.url)
        self.spec = spec_from_text(text, self.workdir / "cluster.yaml").cluster
        self.vip = f"{self.lab.subnet}.10"

    # --- running things ---------------------------------------------------------------------
    def sh(self, name: str, command: str, *, check: bool = True, timeout: float = 180) -> Result:
        return self.lab.ssh(name, command, check=check, timeout=timeout)

    def kubectl(self, name: str, args: str, *, check: bool = True) -> Result:
        """The real kubectl from the kubectl package, inside a machine."""
        return self.sh(name, f"{KUBECTL} {args}", check=check)

    def kubectl_json(self, name: str, args: str) -> dict:
        return json.loads(self.kubectl(name, f"{args} -o json").stdout)

    def host_kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The real kubectl on the operator's side, through the VIP, with admin.conf."""
        done = subprocess.run(
            [HOST_KUBECTL, "--kubeconfig", str(self.workdir / "admin.conf"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done

    def put(self, name: str, file: render.RenderedFile) -> None:
        self.lab.put(name, file.content.encode(), str(file.path), mode=f"{file.mode:04o}")

    def wait(self, what: str, fn, timeout: float = 90, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = fn()
            except (LabError, AssertionError, ValueError, OSError) as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}: last {last!r}")

    def host(self, name: str):
        return next(h for h in self.spec.hosts if h.name == name)

    # --- what k8sboot does ------------------------------------------------------------------
    def install(self, names: list[str]) -> None:
        script = " && ".join(
            [
                "sudo install -d -m 0755 /etc/apt/sources.list.d",
                f"printf %s {shlex.quote(apt_source(self.url))} "
                "| sudo tee /etc/apt/sources.list.d/kubernetes.sources >/dev/null",
                "sudo apt-get update -qq",
                "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                f"kubeadm={VERSION}-* kubelet={VERSION}-* kubectl={VERSION}-* >/dev/null",
                "sudo apt-mark hold kubeadm kubelet kubectl >/dev/null",
                "sudo sysctl -q -w net.ipv4.ip_forward=1",
                "sudo systemctl enable -q containerd",
                "sudo systemctl restart containerd",
            ]
        )
        for name in names:
            for file in render.containerd_files(self.spec):
                self.put(name, file)
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda n: self.sh(n, script, timeout=300), names))

    def kube_vip(self, name: str, during_init: bool) -> None:
        self.put(name, render.kube_vip_file(self.spec, "eth0", during_init))

    def init(self) -> str:
        self.kube_vip("cp1", during_init=True)
        self.put("cp1", render.kubeadm_file(self.spec, self.host("cp1")))
        out = self.sh("cp1", f"sudo kubeadm init --config {render.INIT_CONFIG} --upload-certs")
        self.kube_vip("cp1", during_init=False)
        return out.stdout

    def token(self, description: str) -> str:
        out = self.sh(
            "cp1", f"sudo kubeadm token create --ttl 15m0s --description {shlex.quote(description)}"
        ).stdout
        return out.strip().splitlines()[-1].strip()

    def certificate_key(self) -> str:
        out = self.sh("cp1", "sudo kubeadm init phase upload-certs --upload-certs").stdout
        return out.strip().splitlines()[-1].strip()

    def ca_hash(self) -> str:
        # kubeadm's discovery hash: sha256 of the CA's DER SubjectPublicKeyInfo.
        pem = self.sh("cp1", "cat /etc/kubernetes/pki/ca.crt").stdout.encode()
        spki = (
            x509.load_pem_x509_certificate(pem)
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        )
        return "sha256:" + hashlib.sha256(spki).hexdigest()

    def join(self, name: str, token: str, key: str | None = None, *, check: bool = True) -> Result:
        secrets = render.JoinSecrets(token, self.ca_hash(), key)
        self.put(name, render.kubeadm_file(self.spec, self.host(name), secrets))
        try:
            return self.sh(name, f"sudo kubeadm join --config {render.JOIN_CONFIG}", check=check)
        finally:
            self.sh(name, f"sudo rm -f {render.JOIN_CONFIG}", check=False)

    def join_control_plane(self, name: str) -> None:
        key = self.certificate_key()
        token = self.token(f"k8sboot: join {name}")
        try:
            self.join(name, token, key)
        finally:
            self.sh("cp1", f"sudo kubeadm token delete {token.split('.')[0]}", check=False)
        self.kube_vip(name, during_init=False)

    def join_workers(self, names: list[str]) -> None:
        token = self.token("k8sboot: join workers")
        try:
            with ThreadPoolExecutor(len(names)) as pool:
                list(pool.map(lambda n: self.join(n, token), names))
        finally:
            self.sh("cp1", f"sudo kubeadm token delete {token.split('.')[0]}", check=False)

    # --- what tests look at -----------------------------------------------------------------
    def ready_nodes(self, name: str = "cp1") -> dict[str, bool]:
        items = self.kubectl_json(name, "get nodes")["items"]
        return {
            n["metadata"]["name"]: any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
            for n in items
        }

    def etcd_members(self, name: str = "cp1") -> list[dict]:
        return json.loads(self.sh(name, f"{ETCDCTL} member list -w json").stdout)["members"]

    def vip_holder(self, name: str = "cp1") -> str:
        return self.kubectl(
            name, "-n kube-system get lease plndr-cp-lock -o jsonpath={.spec.holderIdentity}"
        ).stdout.strip()

    def has_vip(self, name: str) -> bool:
        out = self.sh(name, "ip -4 -o addr show dev eth0").stdout
        return f" {self.vip}/32 " in out

    def vip_readyz(self) -> bool:
        done = subprocess.run(
            [
                "curl",
                "-sf",
                "-m",
                "2",
                "--cacert",
                str(self.workdir / "ca.crt"),
                f"https://{self.vip}:6443/readyz",
            ],
            capture_output=True,
            text=True,
        )
        return done.returncode == 0 and done.stdout.strip() == "ok"


def bring_up(c: StandinCluster) -> None:
    """What `k8sboot up` does, step by step, with k8sboot's rendered files."""
    c.install([*CONTROL_PLANES, *WORKERS])
    # Like upstream's package: enabled at install, restarting until kubeadm configures it.
    c.observed["kubelet_before_init"] = c.wait(
        "the kubelet to restart in a loop",
        lambda: (out := c.sh("w1", KUBELET_STATE).stdout) and "auto-restart" in out and out,
        timeout=30,
        interval=0.5,
    )
    c.observed["kubelet_journal"] = c.sh(
        "w1", "sudo journalctl -u kubelet --no-pager -o cat | tail -n 3"
    ).stdout
    c.observed["held"] = c.sh("w1", "apt-mark showhold").stdout
    c.observed["init"] = c.init()
    c.join_control_plane("cp2")
    c.join_control_plane("cp3")
    c.join_workers(list(WORKERS))
    c.put("cp1", render.cni_file(c.spec))
    c.kubectl("cp1", f"apply -f {render.CNI_MANIFEST}")


def healthy(c: StandinCluster) -> bool:
    try:
        nodes = c.ready_nodes()
    except (LabError, ValueError):
        return False
    return len(nodes) == 5 and all(nodes.values())


@pytest.fixture(scope="module")
def cluster(lab_required: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    # K8SBOOT_LAB_KEEP=1 (iterating on these tests, never CI): keep the lab and its cluster
    # afterwards, and reuse a healthy one next time.
    keep = os.environ.get("K8SBOOT_LAB_KEEP", "") == "1"
    # Plain LXC machines (the lab's lighter backend, from the same box): no Vagrant call, so
    # no Vagrant machine lock shared with the Vagrant labs, and this module runs beside them.
    lab = Lab(index=LAB_INDEX, backend="lxc")
    shape = (len(CONTROL_PLANES), len(WORKERS), 0)
    try:
        lab.up(*shape, fresh=not keep)
        c = StandinCluster(
            lab, f"http://{lab.subnet}.1:{REPO_PORT}/", tmp_path_factory.mktemp("standins")
        )
        saved = lab.workdir / "standins-observed.json"
        reuse = keep and saved.exists() and healthy(c)
        if keep and not reuse:
            lab.up(*shape, fresh=True)
        repo = debs.build_repo(tmp_path_factory.mktemp("standins-apt"), [VERSION])
        server = debs.serve(repo, f"{lab.subnet}.1", REPO_PORT)
        try:
            if reuse:
                c.observed = json.loads(saved.read_text())
            else:
                bring_up(c)
                saved.write_text(json.dumps(c.observed))
            for name, remote in (("admin.conf", ADMIN), ("ca.crt", "/etc/kubernetes/pki/ca.crt")):
                (c.workdir / name).write_text(c.sh("cp1", f"sudo cat {remote}").stdout)
                (c.workdir / name).chmod(0o600)
            c.wait("5 Ready nodes", lambda: healthy(c), timeout=120)
            yield c
        finally:
            server.shutdown()
            server.server_close()
    finally:
        if keep:
            lab._close_ssh_masters()
        else:
            lab.destroy()


def test_packages_install_like_upstream(cluster: StandinCluster) -> None:
    state = dict(line.split("=", 1) for line in cluster.observed["kubelet_before_init"].split())
    assert state == {
        "UnitFileState": "enabled",
        "ActiveState": "activating",
        "SubState": "auto-restart",
        "Result": "exit-code",
    }
    assert "failed to load kubelet config file" in cluster.observed["kubelet_journal"]
    assert cluster.observed["held"].split() == ["kubeadm", "kubectl", "kubelet"]
    versions = cluster.sh(
        "cp2", "dpkg-query -W -f='${Package} ${Version}\\n' kubeadm kubelet kubectl"
    ).stdout
    assert set(versions.splitlines()) == {
        f"kubeadm {VERSION}-1.1",
        f"kubelet {VERSION}-1.1",
        f"kubectl {VERSION}-1.1",
    }
    assert cluster.sh("cp2", "kubeadm version -o short").stdout.strip() == f"v{VERSION}"
    assert f"v{VERSION}" in cluster.sh("cp2", "kubectl version --client").stdout


def test_five_ready_nodes_through_the_real_kubectl(cluster: StandinCluster) -> None:
    assert "Your Kubernetes control-plane has initialized successfully!" in cluster.observed["init"]
    assert f"kubeadm join {cluster.vip}:6443 --token" in cluster.observed["init"]
    assert cluster.ready_nodes("cp2") == dict.fromkeys((*CONTROL_PLANES, *WORKERS), True)
    # On the operator's side, through the VIP, with the admin.conf kubeadm wrote.
    assert f"server: https://{cluster.vip}:6443" in (cluster.workdir / "admin.conf").read_text()
    nodes = json.loads(cluster.host_kubectl("get", "nodes", "-o", "json").stdout)["items"]
    roles = {
        n["metadata"]["name"]: "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"]
        for n in nodes
    }
    assert roles == {"cp1": True, "cp2": True, "cp3": True, "w1": False, "w2": False}
    addresses = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in nodes}
    assert addresses["w2"] == f"{cluster.lab.subnet}.102"
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {f"v{VERSION}"}
    pods = cluster.kubectl("cp1", "get pods -n kube-system").stdout
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        for cp in CONTROL_PLANES:
            assert f"{component}-{cp} " in pods
    # flannel's install-cni ran: the CNI config the kubelet needs for Ready is there.
    assert "cbr0" in cluster.sh("w1", "sudo cat /etc/cni/net.d/10-flannel.conflist").stdout


def test_real_etcd_three_members_at_kubeadm_paths(cluster: StandinCluster) -> None:
    members = cluster.etcd_members()
    assert sorted(m["name"] for m in members) == list(CONTROL_PLANES)
    assert not any(m.get("isLearner") for m in members)
    subnet = cluster.lab.subnet
    assert sorted(m["peerURLs"][0] for m in members) == [
        f"https://{subnet}.{i}:2380" for i in (11, 12, 13)
    ]
    for cp in CONTROL_PLANES:
        process = cluster.sh(cp, "pgrep -a -x etcd").stdout
        assert "--data-dir=/var/lib/etcd" in process
        assert "--cert-file=/etc/kubernetes/pki/etcd/server.crt" in process
        assert cluster.sh(cp, "sudo test -f /var/lib/etcd/member/snap/db && echo ok").stdout
    # The binary is Debian 13's real etcd 3.5, and kubeadm's manifest names that version.
    version = re.search(r"etcd Version: (3\.5\.\d+)", cluster.sh("cp1", "etcd --version").stdout)
    assert version, "no etcd 3.5 in the machine"
    image = cluster.sh("cp1", "sudo grep -h 'image:' /etc/kubernetes/manifests/etcd.yaml").stdout
    assert image.strip() == f"image: registry.k8s.io/etcd:{version.group(1)}-0"
    health = json.loads(cluster.sh("cp2", f"{ETCDCTL} endpoint health --cluster -w json").stdout)
    assert len(health) == 3 and all(h["health"] for h in health)


def test_vip_answers_and_apiservers_are_ready(cluster: StandinCluster) -> None:
    holder = cluster.vip_holder()
    assert holder in CONTROL_PLANES
    assert [cp for cp in CONTROL_PLANES if cluster.has_vip(cp)] == [holder]
    assert cluster.vip_readyz()
    for cp in CONTROL_PLANES:
        verbose = cluster.sh(
            cp, "curl -sk https://127.0.0.1:6443/readyz?verbose", check=False
        ).stdout
        assert "readyz check passed" in verbose
    assert "kube-vip-cp1" in cluster.kubectl("cp1", "get pods -n kube-system").stdout


def test_drain_blocked_by_a_pdb_fails_with_kubectls_message(cluster: StandinCluster) -> None:
    objs = [
        workloads.deployment("web", replicas=2, nodes=["w1"]),
        workloads.pdb("web", "web", min_available=2),
        workloads.daemonset("agent"),
    ]
    cluster.lab.put("cp1", workloads.to_yaml(objs).encode(), "/root/work.yaml")
    cluster.kubectl("cp1", "apply -f /root/work.yaml")
    try:
        cluster.wait(
            "the PDB to see 2 healthy pods",
            lambda: cluster.kubectl_json("cp1", "get pdb web")["status"].get("currentHealthy") == 2,
        )
        blocked = cluster.kubectl(
            "cp1",
            "drain w1 --ignore-daemonsets --delete-emptydir-data --timeout=10s",
            check=False,
        )
        assert blocked.returncode != 0
        assert "Cannot evict pod as it would violate the pod's disruption budget." in (
            blocked.stderr
        )
        assert "SchedulingDisabled" in cluster.kubectl("cp1", "get node w1").stdout
    finally:
        cluster.kubectl("cp1", "delete -f /root/work.yaml --wait=false", check=False)
        cluster.kubectl("cp1", "uncordon w1", check=False)


def test_static_pods_stop_and_start_with_their_manifests(cluster: StandinCluster) -> None:
    # What the etcd restore procedure does on a control plane (issue 6).
    cp = next(c for c in ("cp3", "cp2") if c != cluster.vip_holder())
    cluster.sh(
        cp,
        "sudo mkdir -p /root/manifests.away && sudo mv /etc/kubernetes/manifests/etcd.yaml "
        "/etc/kubernetes/manifests/kube-apiserver.yaml /root/manifests.away/",
    )
    cluster.wait(
        f"etcd and kube-apiserver to stop on {cp}",
        lambda: (
            cluster.sh(
                cp, "pgrep -x etcd; pgrep -f '^/usr/bin/python3 -m standins.apiserver'", check=False
            ).stdout
            == ""
        ),
        timeout=60,
    )
    assert len(cluster.etcd_members()) == 3  # still a member, just not running
    cluster.sh(cp, "sudo sh -c 'mv /root/manifests.away/*.yaml /etc/kubernetes/manifests/'")
    cluster.wait(
        f"kube-apiserver on {cp} to be ready again",
        lambda: (
            cluster.sh(cp, "curl -sk https://127.0.0.1:6443/readyz", check=False).stdout == "ok"
        ),
    )
    health = json.loads(cluster.sh(cp, f"{ETCDCTL} endpoint health -w json").stdout)
    assert health[0]["health"]


def test_certs_check_expiration(cluster: StandinCluster) -> None:
    doc = json.loads(cluster.sh("cp2", "sudo kubeadm certs check-expiration -o json").stdout)
    names = {c["name"] for c in doc["certificates"]}
    assert {"apiserver", "etcd-server", "etcd-peer", "admin.conf"} <= names
    assert all(c["residualTime"] > 364 * 86400 for c in doc["certificates"] if not c["missing"])
    text = cluster.sh("cp2", "sudo kubeadm certs check-expiration").stdout
    assert "CERTIFICATE AUTHORITY" in text and "etcd-ca" in text


def test_reset_removes_the_etcd_member_and_an_expired_key_fails_the_join(
    cluster: StandinCluster,
) -> None:
    cp = next(c for c in ("cp3", "cp2") if c != cluster.vip_holder())
    out = cluster.sh(cp, "sudo kubeadm reset -f").stdout
    assert "[reset] Stopping the kubelet service" in out
    assert "Failed to remove etcd member" not in out, out
    members = cluster.etcd_members()
    assert sorted(m["name"] for m in members) == sorted(c for c in CONTROL_PLANES if c != cp)
    cluster.kubectl("cp1", f"delete node {cp}")

    # An uploaded certificate key expires with the token that owns kubeadm-certs (2 hours
    # upstream). Expire that token as its clock would: the token cleaner deletes it, the
    # garbage collector then deletes the Secret.
    key = cluster.certificate_key()
    owner = cluster.kubectl_json("cp1", "get secret -n kube-system kubeadm-certs")["metadata"][
        "ownerReferences"
    ][0]["name"]
    past = base64.b64encode(b"2001-01-01T00:00:00Z").decode()
    patch = json.dumps({"data": {"expiration": past}})
    cluster.kubectl("cp1", f"patch secret -n kube-system {owner} --type=merge -p '{patch}'")
    cluster.wait(
        "kubeadm-certs to be garbage-collected",
        lambda: (
            cluster.kubectl(
                "cp1", "get secret -n kube-system kubeadm-certs", check=False
            ).returncode
            != 0
        ),
    )
    token = cluster.token(f"k8sboot: join {cp}")
    failed = cluster.join(cp, token, key, check=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error execution phase control-plane-prepare/download-certs")
    assert (
        'Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This Secret '
        "might have expired." in failed.stderr
    )

    # k8sboot's retry: reset what the failed join left, fresh key and token, join again.
    cluster.sh(cp, "sudo kubeadm reset -f")
    cluster.join_control_plane(cp)
    cluster.wait(
        f"{cp} back as a voting etcd member",
        lambda: (
            sorted(m["name"] for m in cluster.etcd_members() if not m.get("isLearner"))
            == list(CONTROL_PLANES)
        ),
    )
    cluster.wait(f"{cp} Ready", lambda: cluster.ready_nodes().get(cp))


def test_vip_moves_when_its_holder_stops(cluster: StandinCluster) -> None:
    holder = cluster.vip_holder()
    others = [cp for cp in CONTROL_PLANES if cp != holder]
    # Power loss (lxc-stop -k): no chance to release the Lease, so another control plane
    # takes it once it has gone unrenewed for vip_leaseduration (5 s).
    cluster.lab.stop(holder, force=True)
    stopped = time.monotonic()
    cluster.wait("the VIP to answer again", cluster.vip_readyz, timeout=60, interval=0.2)
    moved_after = time.monotonic() - stopped
    print(f"VIP {cluster.vip} answered again {moved_after:.1f}s after {holder} was killed")
    new = cluster.vip_holder(others[0])
    assert new in others
    assert cluster.has_vip(new)
    assert moved_after < 20, f"the VIP took {moved_after:.1f}s to move"
    nodes = json.loads(cluster.host_kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 5
    # The old holder comes back as a follower; its kubelet and static pods start at boot.
    cluster.lab.start(holder)
    cluster.wait(
        f"{holder} Ready again",
        lambda: cluster.ready_nodes(new).get(holder),
        timeout=120,
    )
    cluster.wait(
        "3 healthy etcd members",
        lambda: all(
            h["health"]
            for h in json.loads(
                cluster.sh(new, f"{ETCDCTL} endpoint health --cluster -w json").stdout
            )
        ),
    )
    assert cluster.vip_holder(new) == new
    assert not cluster.has_vip(holder)
