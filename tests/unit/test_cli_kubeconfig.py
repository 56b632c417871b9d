"""`k8sboot kubeconfig`: the admin kubeconfig, and client-certificate kubeconfigs from
`kubeadm kubeconfig user` on a control plane (no machines: the real Transport and run
log, with the SSH session answered here)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli.app import cli
from k8sboot.transport import Connection, Unreachable

from .conftest import BASE

ADMIN_KEY = base64.b64encode(b"admin key " * 20).decode()
USER_KEY = base64.b64encode(b"alice key " * 20).decode()


def kubeconfig(server: str, user: str, key: str) -> bytes:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": server}}],
            "contexts": [{"name": f"{user}@test", "context": {"cluster": "test", "user": user}}],
            "current-context": f"{user}@test",
            "users": [{"name": user, "user": {"client-key-data": key}}],
        }
    ).encode()


ADMIN_CONF = kubeconfig("https://10.0.0.11:6443", "kubernetes-admin", ADMIN_KEY)
# kubeadm kubeconfig user: the YAML, then Fprintln's newline
USER_CONF = kubeconfig("https://10.0.0.10:6443", "alice", USER_KEY) + b"\n"


class Hosts:
    """What each host answers: down (unreachable), its files, and kubeadm's output; the
    commands and their stdin as they reached the SSH session."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.files: dict[str, dict[str, bytes]] = {
            "cp1": {"/etc/kubernetes/admin.conf": ADMIN_CONF, "/etc/kubernetes/pki/ca.key": b""},
            "cp2": {"/etc/kubernetes/admin.conf": ADMIN_CONF, "/etc/kubernetes/pki/ca.key": b""},
        }
        self.ran: list[tuple[str, str, bytes | None]] = []
        self.kubeadm_exit, self.kubeadm_stderr = 0, b""

    def open(self, connection: Connection) -> Connection:
        if connection.name in self.down:
            raise Unreachable(f"{connection.name}: cannot reach it over SSH: timed out")
        connection._client = SimpleNamespace(close=lambda: None)  # the SSH client, closed
        return connection

    def session(self, connection, wrapped: str, stdin, timeout, label):
        self.ran.append((connection.name, wrapped, stdin))
        files = self.files.get(connection.name, {})
        if "kubeadm kubeconfig user" in wrapped:
            if "/etc/kubernetes/pki/ca.key" not in files:
                return 3, b"", b""
            if self.kubeadm_exit:
                return self.kubeadm_exit, b"", self.kubeadm_stderr
            return 0, USER_CONF, self.kubeadm_stderr
        path = wrapped.split("[ -e ", 1)[1].split(" ]", 1)[0]
        return (0, files[path], b"") if path in files else (3, b"", b"")


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> Hosts:
    fake = Hosts()
    monkeypatch.setattr(Connection, "open", lambda self, attempts=3: fake.open(self))
    monkeypatch.setattr(Connection, "_session", lambda self, *a: fake.session(self, *a))
    return fake


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for n in (3, 2):
        host = {"name": f"cp{n}", "address": f"10.0.0.1{n}", "roles": ["control-plane"]}
        data["hosts"].insert(1, host)
    data["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(data))

    def invoke(*args: str):
        return CliRunner().invoke(cli, ["kubeconfig", *args], catch_exceptions=False)

    return invoke


def logs(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in (tmp_path / ".k8sboot/test/logs").glob("*.log"))


def test_prints_the_admin_kubeconfig_with_the_endpoint_as_its_server(run, hosts, tmp_path):
    result = run()
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["clusters"][0]["cluster"]["server"] == "https://10.0.0.10:6443"
    assert printed["users"][0]["user"]["client-key-data"] == ADMIN_KEY
    assert [name for name, _, _ in hosts.ran] == ["cp1"]
    assert ADMIN_KEY not in logs(tmp_path)


def test_passes_over_control_planes_that_cannot_give_it(run, hosts) -> None:
    hosts.down.add("cp1")
    result = run()
    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout)["users"][0]["user"]["client-key-data"] == ADMIN_KEY
    assert [name for name, _, _ in hosts.ran] == ["cp2"]

    hosts.files["cp2"].clear()
    result = run()
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        "error: no control plane to take the kubeconfig from: cp1: cannot reach it over SSH: "
        "timed out; cp2: no /etc/kubernetes/admin.conf (kubeadm has not set it up there); "
        "cp3: no /etc/kubernetes/admin.conf (kubeadm has not set it up there)\n"
    )


def test_out_writes_a_private_file_and_never_replaces_another(run, hosts, tmp_path) -> None:
    out = tmp_path / "new" / "dir" / "admin.conf"
    result = run("--out", str(out))
    assert result.exit_code == 0 and result.stdout == f"wrote {out}\n"
    assert yaml.safe_load(out.read_text())["clusters"][0]["cluster"]["server"] == (
        "https://10.0.0.10:6443"
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(out.parent.parent.stat().st_mode) == 0o700

    again = run("--out", str(out))
    assert again.exit_code == 0 and again.stdout == f"{out} is up to date\n"

    other = tmp_path / "other.conf"
    other.write_text("mine\n")
    refused = run("--out", str(other))
    assert refused.exit_code == 2
    assert refused.output.count("\n") == 1 and str(other) in refused.output
    assert other.read_text() == "mine\n"


def test_out_leaves_an_existing_directory_as_it_is(run, hosts, tmp_path) -> None:
    tmp_path.joinpath("shared").mkdir(mode=0o755)
    tmp_path.joinpath("shared").chmod(0o755)
    assert run("--out", "shared/admin.conf").exit_code == 0
    assert stat.S_IMODE(tmp_path.joinpath("shared").stat().st_mode) == 0o755


def test_user_asks_kubeadm_on_a_control_plane(run, hosts, tmp_path) -> None:
    hosts.down.add("cp1")
    result = run("--user", "alice", "--group", "dev", "--group", "ops", "--ttl", "24h")
    assert result.exit_code == 0, result.output
    assert result.stdout.encode() == USER_CONF
    ((name, command, stdin),) = hosts.ran
    assert name == "cp2"
    assert "kubeadm kubeconfig user --client-name=alice" in command and "--config" in command
    for flag in ("--client-name=alice", "--org=dev", "--org=ops", "--validity-period=86400s"):
        assert flag in command
    documents = {d["kind"]: d for d in yaml.safe_load_all(stdin)}
    assert documents["ClusterConfiguration"]["controlPlaneEndpoint"] == "10.0.0.10:6443"
    assert documents["ClusterConfiguration"]["clusterName"] == "test"
    assert USER_KEY not in logs(tmp_path)
    assert "kubeadm kubeconfig user" in logs(tmp_path)


def test_user_without_a_ttl_takes_kubeadms_default(run, hosts) -> None:
    assert run("--user", "bob").exit_code == 0
    ((_, command, _),) = hosts.ran
    assert "--client-name=bob" in command and "--validity-period" not in command


def test_user_passes_over_a_control_plane_without_the_ca_key(run, hosts) -> None:
    del hosts.files["cp1"]["/etc/kubernetes/pki/ca.key"]
    assert run("--user", "carol").exit_code == 0
    assert [name for name, _, _ in hosts.ran] == ["cp1", "cp2"]

    del hosts.files["cp2"]["/etc/kubernetes/pki/ca.key"]
    result = run("--user", "carol")
    assert result.exit_code == 1
    assert "cp2: no /etc/kubernetes/pki/ca.key (kubeadm has not set it up" in result.stderr


def test_user_says_what_kubeadm_said(run, hosts) -> None:
    hosts.kubeadm_stderr = b"W0101 kubeconfig.go:94] WARNING: the specified certificate...\n"
    result = run("--user", "erin", "--ttl", "87600h")
    assert result.exit_code == 0
    assert result.stderr == "warning: cp1: W0101 kubeconfig.go:94] WARNING: the specified " + (
        "certificate...\n"
    )

    hosts.ran.clear()
    hosts.kubeadm_exit, hosts.kubeadm_stderr = 1, b"couldn't create a kubeconfig\n"
    result = run("--user", "erin")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(
        "error: cp1: `kubeadm kubeconfig user --client-name=erin` exited 1: couldn't create "
        "a kubeconfig (full log: "
    )
    assert [name for name, _, _ in hosts.ran] == ["cp1"]  # a failure is not passed over


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "dev"], "--group and --ttl go with --user"),
        (["--ttl", "1h"], "--group and --ttl go with --user"),
        (["--user", "a", "--group", "a,b"], "--group 'a,b': kubeadm"),
        (["--user", ""], "--user: a name"),
        (["--user", "a", "--ttl", "soon"], "is not a duration"),
        (["--out", "."], "is a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, hosts, args, message) -> None:
    result = run(*args)
    assert result.exit_code == 2 and message in result.output
    assert hosts.ran == []


def test_help_has_examples(run) -> None:
    result = run("--help")
    assert result.exit_code == 0 and "Examples:" in result.output
    assert "k8sboot kubeconfig --user" in result.output
