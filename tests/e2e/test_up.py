"""`k8sboot up` on lab machines: the README's two quickstarts as written, no-op re-runs,
plan, interrupted runs, a new worker, a changed host key, reset, calico (three control
planes behind kube-vip: test_ha.py).

The tests of this module build on each other and run in order.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.e2e import readme
from tests.e2e.conftest import K8sboot, SharedHA, events, finished
from tests.lab import calico

VAGRANT_QUICKSTART = "Quickstart: real VMs with Vagrant (VirtualBox or libvirt)"
SSH_QUICKSTART = "Quickstart: any SSH machines"


def _ansible_runs(k8sboot: K8sboot) -> int:
    runs = k8sboot.state / "ansible"
    return len(list(runs.iterdir())) if runs.exists() else 0


@pytest.fixture(scope="module", autouse=True)
def _one_control_plane_two_workers(k8sboot: K8sboot, ha: SharedHA) -> None:
    """The lab's shape for this module, whatever the modules before it left."""
    ha.release()
    k8sboot.lab.up(1, 2)


def test_the_vagrant_quickstart_brings_a_cluster_up(k8sboot: K8sboot) -> None:
    """The README's Vagrant quickstart as written, up to its last line (`down`, which ends
    this module): `vagrant up` (the machines are up already), `up --vagrant` (with this
    module's cluster file beside it, for the lab's package mirror), the kubeconfig, kubectl,
    and a re-run that changes nothing."""
    *pasted, down = readme.quickstart(VAGRANT_QUICKSTART)
    assert down == "k8sboot down --vagrant --yes"
    env = {**k8sboot.env, "PATH": readme.tools(k8sboot.workdir / "bin")}
    said = [readme.paste(line, k8sboot.workdir, env) for line in pasted]
    brought_up = said[pasted.index("k8sboot up --vagrant")]
    for step in ("kubeadm init", "join workers", "CNI"):
        assert f"{step}" in brought_up, brought_up
    listed = said[next(i for i, line in enumerate(pasted) if line.startswith("kubectl"))]
    ready = {line.split()[0] for line in listed.splitlines()[1:] if line.split()[1] == "Ready"}
    assert ready == {"cp1", "w1", "w2"}, listed
    assert "nothing to do: the cluster is converged" in said[-1]
    written = k8sboot.workdir / "kubeconfig"
    assert written.stat().st_mode & 0o777 == 0o600
    kubeconfig = k8sboot.state / "kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert (k8sboot.state.stat().st_mode & 0o777) == 0o700
    assert "server: https://10.213." in kubeconfig.read_text()


def test_rerun_is_a_no_op_without_ansible(k8sboot: K8sboot) -> None:
    runs = _ansible_runs(k8sboot)
    result = finished(k8sboot.up())
    assert result["changed"] == {}
    assert _ansible_runs(k8sboot) == runs, "no Ansible play when every probe shows convergence"


def test_plan_shows_nothing_and_changes_nothing(k8sboot: K8sboot) -> None:
    done = k8sboot.run("plan", "--vagrant", "--detailed-exitcode", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to change" in done.stdout


def test_logs_and_artifacts_hold_no_secrets(k8sboot: K8sboot) -> None:
    token_like = __import__("re").compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
    checked = 0
    for path in k8sboot.state.rglob("*"):
        if path.is_file() and path.name != "kubeconfig":
            checked += 1
            text = path.read_text(errors="replace")
            assert not token_like.search(text), f"{path} holds a bootstrap token"
            assert "PRIVATE KEY" not in text and "client-key-data" not in text, path
            assert "certificate key:" not in text.lower() or "<masked>" in text, path
    assert checked > 5  # the run logs and the Ansible artifacts were there to read


def test_interrupted_runs_converge(k8sboot: K8sboot) -> None:
    k8sboot.run("reset", "--vagrant", "--yes", "--purge-packages")
    for step, after in (
        ("node setup (Ansible)", 4.0),
        ("kubeadm init", 1.0),
        ("join workers", 0.5),
    ):
        seen = k8sboot.kill_during(step, after)
        assert any(e.get("step") == step for e in seen), f"never reached {step}"
    result = finished(k8sboot.up())
    assert result["ok"] is True
    assert k8sboot.nodes() == {"cp1": True, "w1": True, "w2": True}
    assert finished(k8sboot.up())["changed"] == {}


def test_plan_shows_pending_changes_and_changes_nothing(k8sboot: K8sboot) -> None:
    k8sboot.lab.ssh("w2", "sudo sh -c 'echo \"# edited\" >> /etc/containerd/config.toml'")
    before = k8sboot.lab.ssh("w2", "sha256sum /etc/containerd/config.toml").stdout
    done = k8sboot.run("plan", "--vagrant", "--detailed-exitcode", check=False)
    assert done.returncode == 2
    assert "+# edited" not in done.stdout and "-# edited" in done.stdout  # a real diff
    assert k8sboot.lab.ssh("w2", "sha256sum /etc/containerd/config.toml").stdout == before
    result = finished(k8sboot.up())
    assert result["changed"] == {"containerd configuration": ["w2"]}


def test_containerd_on_a_config_it_never_read_is_restarted(k8sboot: K8sboot) -> None:
    """What a run killed between writing config.toml and restarting containerd leaves:
    the file is k8sboot's, containerd runs on what it read before (here containerd's own
    default: no SystemdCgroup). Issue 14.3: the probe never reported when a service
    started, so this went unseen."""
    lab = k8sboot.lab
    lab.ssh(
        "w1",
        "sudo sh -c 'cp /etc/containerd/config.toml /root/k8sboot-config.toml"
        " && containerd config default > /etc/containerd/config.toml"
        " && systemctl restart containerd"
        " && cp /root/k8sboot-config.toml /etc/containerd/config.toml'",
    )
    started = "systemctl show -p ExecMainStartTimestampMonotonic --value containerd"
    before = int(lab.ssh("w1", started).stdout)
    done = k8sboot.run("plan", "--vagrant", "--detailed-exitcode", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "restart containerd (it has not read its configuration yet)" in done.stdout
    assert finished(k8sboot.up())["changed"] == {"containerd configuration": ["w1"]}
    assert int(lab.ssh("w1", started).stdout) > before
    assert finished(k8sboot.up())["changed"] == {}


def test_adding_a_worker_touches_only_it_and_the_control_plane(k8sboot: K8sboot) -> None:
    lab = k8sboot.lab
    shape = lab.shape
    lab.up(shape.control_planes, shape.workers + 1)
    new = f"w{shape.workers + 1}"
    before = {
        m.name: lab.ssh(
            m.name,
            "sudo find /etc /var/lib/k8sboot -newer /etc/hostname "
            "-type f 2>/dev/null | sort | sha256sum",
        ).stdout
        for m in lab.machines
        if m.name != new
    }
    evts = k8sboot.up()
    touched = {h for e in evts if e["event"] == "action_finished" for h in e["hosts"]}
    changed = {h for e in evts if e["event"] == "action_finished" for h in e["changed"]}
    assert changed == {new}, changed
    assert touched <= {new, "cp1"}, touched
    assert new in touched
    assert k8sboot.nodes()[new] is True
    for name, listing in before.items():
        if name != "cp1":
            after = lab.ssh(
                name,
                "sudo find /etc /var/lib/k8sboot -newer /etc/hostname "
                "-type f 2>/dev/null | sort | sha256sum",
            ).stdout
            assert after == listing, f"{name} was changed"


def test_a_changed_host_key_stops_the_run(k8sboot: K8sboot) -> None:
    lab = k8sboot.lab
    lab.ssh(
        "w1",
        "sudo sh -c 'rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null "
        "&& systemctl restart ssh'",
    )
    lab.forget_host_key("w1")
    done = k8sboot.run("up", "--vagrant", check=False)
    assert done.returncode == 3
    assert "host key changed" in done.stderr and "Traceback" not in done.stderr
    # The operator checks the machine and drops the old key: the next run pins the new one.
    known = k8sboot.state / "known_hosts"
    address = lab.machine("w1").ssh_host
    known.write_text(
        "".join(
            line
            for line in known.read_text().splitlines(keepends=True)
            if not line.startswith(address + " ")
        )
    )
    assert finished(k8sboot.up())["changed"] == {}


def test_reset_cleans_up_and_is_idempotent(k8sboot: K8sboot) -> None:
    k8sboot.run("reset", "--vagrant", "--yes")
    leftovers = (
        "sudo sh -c 'find /etc/kubernetes/manifests /etc/cni/net.d -type f 2>/dev/null "
        "| wc -l; iptables-save | grep -c KUBE- || true'"
    )
    for machine in k8sboot.lab.machines:
        left = k8sboot.lab.ssh(machine.name, leftovers).stdout.split()
        assert left == ["0", "0"], f"{machine.name}: {left} manifests/CNI files, KUBE- rules"
    assert not (k8sboot.state / "kubeconfig").exists()
    again = events(k8sboot.run("reset", "--vagrant", "--yes", "-o", "json").stdout)
    assert finished(again)["changed"] == {}


def test_the_ssh_machines_quickstart_as_written(
    k8sboot: K8sboot, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The README's quickstart for any SSH machines, pasted by a newcomer whose key is on
    every machine and whose user has passwordless sudo (the lab's user), on the machines
    `reset` left: the addresses, user and key are the only words replaced. The lab's
    machines reach no pkgs.k8s.io: the cluster file gets this module's package mirror and
    etcd download, as the README says to do for machines without that route."""
    lab = k8sboot.lab
    machines = {m.name: m for m in lab.machines if m.name in ("cp1", "w1", "w2")}
    assert len(machines) == 3  # (w3, which an earlier test added, has no part in this)
    assert all(m.address == m.ssh_host for m in machines.values())
    user = machines["cp1"].ssh_user
    workdir = tmp_path_factory.mktemp("newcomer")
    home = workdir / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()
    for name in machines:
        lab.ssh(name, f"echo '{public}' >> ~/.ssh/authorized_keys")
    env = {k: v for k, v in k8sboot.env.items() if k != "K8SBOOT_FILE"}
    env.update(HOME=str(home), PATH=readme.tools(workdir / "bin"))
    init, *pasted = readme.quickstart(SSH_QUICKSTART)
    addresses = ",".join(machines[n].address for n in ("cp1", "w1", "w2"))
    for example, ours in (("10.0.0.11,10.0.0.21,10.0.0.22", addresses), ("debian", user)):
        assert f" {example} " in f"{init} ", f"the README's example changed: {init}"
        init = init.replace(f" {example} ", f" {ours} ", 1)
    readme.paste(init, workdir, env)
    written = yaml.safe_load((workdir / "cluster.yaml").read_text())
    ours = yaml.safe_load(k8sboot.spec.read_text())
    written["packages"], written["etcd"] = ours["packages"], ours["etcd"]
    (workdir / "cluster.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    said = {line: readme.paste(line, workdir, env) for line in pasted}
    listed = said["kubectl --kubeconfig kubeconfig get nodes"]
    ready = {line.split()[0] for line in listed.splitlines()[1:] if line.split()[1] == "Ready"}
    assert ready == {"cp1", "w1", "w2"}, listed
    assert pasted[-1] == "k8sboot reset --yes"


def test_calico_from_its_pinned_operator_release(k8sboot: K8sboot) -> None:
    """`cni: calico` (issue 14.6): k8sboot fetches the operator's release manifest itself
    (here the lab's stand-in, served on the lab's bridge as a mirror would, with its own
    sha256), applies it server-side, waits for its CRDs, applies its Installation; the API
    stand-in stores CRDs and their objects as an API server does, and nodes turn Ready when
    calico-node has installed its CNI configuration."""
    data = yaml.safe_load(k8sboot.spec.read_text())
    url = data["packages"]["url"]
    data["networking"] = calico.cluster_settings(url)
    k8sboot.spec.write_text(yaml.safe_dump(data))
    try:
        result = finished(k8sboot.up())
        assert result["ok"] is True and "CNI" in result["changed"]
        assert set(k8sboot.nodes().values()) == {True}
        installation = json.loads(
            k8sboot.kubectl(
                "get", "installations.operator.tigera.io", "default", "-o", "json"
            ).stdout
        )
        assert installation["spec"]["calicoNetwork"]["ipPools"][0]["cidr"] == "10.244.0.0/16"
        conflist = k8sboot.lab.ssh("w1", "sudo cat /etc/cni/net.d/10-calico.conflist").stdout
        assert "calico" in conflist
        assert finished(k8sboot.up())["changed"] == {}
        # (A tampered mirror is refused before anything is applied: test_fetch_checked.)
    finally:  # the cluster stays for the quickstart's `down`, which resets it
        data.pop("networking")
        k8sboot.spec.write_text(yaml.safe_dump(data))


def test_the_vagrant_quickstart_ends_with_down(k8sboot: K8sboot) -> None:
    """The Vagrant quickstart's last line: the cluster reset and the machines destroyed
    (this module is the last to use them)."""
    line = readme.quickstart(VAGRANT_QUICKSTART)[-1]
    env = {**k8sboot.env, "PATH": readme.tools(k8sboot.workdir / "bin")}
    said = readme.paste(line, k8sboot.workdir, env)
    assert "destroyed the Vagrant machines cp1, w1, w2" in said, said
    assert {k8sboot.lab.state(name) for name in ("cp1", "w1", "w2")} == {"not_created"}
