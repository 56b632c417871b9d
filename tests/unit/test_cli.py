from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from click.testing import CliRunner

from k8sboot.cli import render as render_command
from k8sboot.cli.app import cli
from k8sboot.render import RenderedFile

from .conftest import BASE, EXAMPLES


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("K8SBOOT_FILE", raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return path


def test_help_lists_only_working_commands(run) -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "Exit codes: 0 success" in result.output
    commands = result.output.split("Commands:")[1].split()
    assert {"init", "validate", "render", "inventory"} <= set(commands)


@pytest.mark.parametrize("command", ["init", "validate", "render", "inventory"])
def test_every_command_has_help(run, command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "--file" in result.output


def test_validate_ok(run, spec: Path) -> None:
    result = run("validate")
    assert result.exit_code == 0
    assert "valid: cluster test, Kubernetes 1.33.1 (kubeadm v1beta4)" in result.output


def test_validate_lists_every_problem_and_exits_2(run, spec: Path) -> None:
    data = yaml.safe_load(spec.read_text())
    data["hosts"][0]["address"] = "10.0.0.300"
    data["networking"] = {"cni": "weave"}
    spec.write_text(yaml.safe_dump(data))
    result = run("validate")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [
        "cluster.yaml: hosts[0].address: '10.0.0.300' is not an IP address",
        "cluster.yaml: networking.cni: 'weave' is not one of 'flannel', 'calico' or 'none'",
    ]


def test_validate_json(run, spec: Path) -> None:
    spec.write_text(spec.read_text().replace("10.0.0.11", "10.0.0.300"))
    result = run("validate", "-o", "json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["errors"] == ["hosts[0].address: '10.0.0.300' is not an IP address"]


def test_other_commands_fail_with_one_line(run, spec: Path) -> None:
    spec.write_text(spec.read_text().replace("10.0.0.11", "10.0.0.300"))
    result = run("render")
    assert result.exit_code == 2
    assert result.output == "error: hosts[0].address: '10.0.0.300' is not an IP address\n"


def test_missing_file_exits_2(run) -> None:
    result = run("validate", "-f", "missing.yaml")
    assert result.exit_code == 2
    assert result.output.startswith("error: missing.yaml: no such file")


def test_file_from_environment(run, spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = spec.with_name("other.yaml")
    spec.rename(other)
    monkeypatch.setenv("K8SBOOT_FILE", str(other))
    assert run("validate").exit_code == 0


def test_usage_error_exits_2(run) -> None:
    assert run("validate", "--output", "xml").exit_code == 2
    assert run("no-such-command").exit_code == 2


def test_init_writes_a_valid_starter(run, tmp_path: Path) -> None:
    result = run(
        "init",
        "--control-planes",
        "3",
        "--workers",
        "2",
        "--addresses",
        "10.1.0.11",
        "--endpoint",
        "10.1.0.10",
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "cluster.yaml").read_text()
    assert text.count("# ") > 10  # commented
    data = yaml.safe_load(text)
    assert [h["name"] for h in data["hosts"]] == ["cp1", "cp2", "cp3", "w1", "w2"]
    assert data["hosts"][4]["address"] == "10.1.0.15"
    assert data["controlPlaneEndpoint"] == {
        "type": "kube-vip",
        "address": "10.1.0.10",
        "port": 6443,
    }
    assert run("validate").exit_code == 0
    again = run("init")
    assert again.exit_code == 2 and "pass --force" in again.output


def test_init_takes_the_ssh_user_and_key_every_host_uses(run, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not read by init\n")
    result = run("init", "--ssh-user", "debian", "--ssh-key", str(key))
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((tmp_path / "cluster.yaml").read_text())
    assert data["ssh"]["user"] == "debian" and data["ssh"]["key"] == str(key)
    assert "ssh" not in data["hosts"][0]  # one setting for every host, not one per host


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--control-planes", "3"], "3 control planes need a virtual IP: pass --endpoint"),
        (["--ssh-key", "/nonexistent/id_ed25519"], "--ssh-key: /nonexistent/id_ed25519: no such"),
        (["--addresses", "10.0.0.1,10.0.0.2"], "--addresses: 2 addresses for 3 hosts"),
        (["--addresses", "10.0.0.999"], "--addresses: '10.0.0.999' does not appear"),
        (["--kubernetes-version", "1.20.0"], "kubernetes.version: Kubernetes 1.20.0 is not"),
        (["--name", "Bad_Name"], "name: 'Bad_Name' is not a valid name"),
    ],
)
def test_init_bad_input(run, tmp_path: Path, args: list[str], message: str) -> None:
    result = run("init", *args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "cluster.yaml").exists()


def test_render_writes_every_file(run, spec: Path, tmp_path: Path) -> None:
    result = run("render", "--out", "out", "-o", "json")
    assert result.exit_code == 0
    written = json.loads(result.stdout)["files"]
    assert {(w["host"], w["path"]) for w in written} == {
        ("cp1", "/etc/containerd/config.toml"),
        ("cp1", "/etc/k8sboot/kubeadm-init.yaml"),
        ("cp1", "/etc/k8sboot/cni.yaml"),
        ("w1", "/etc/containerd/config.toml"),
        ("w1", "/etc/k8sboot/kubeadm-join.yaml"),
    }
    join = tmp_path / "out/w1/etc/k8sboot/kubeadm-join.yaml"
    assert join.stat().st_mode & 0o777 == 0o600
    assert "<bootstrap token" in join.read_text()


def _one_line_refusal(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1, result.output
    for text in expected:
        assert text in result.output


def test_render_refuses_a_registry_key_that_leaves_out(run, spec: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(spec.read_text())
    # OUT/cp1/etc/containerd/certs.d/<key>/hosts.toml: five levels up is OUT's parent.
    data["containerRuntime"] = {"registryMirrors": {"../../../../../escaped": ["https://m"]}}
    spec.write_text(yaml.safe_dump(data))
    result = run("render", "--out", "out")
    _one_line_refusal(result, "containerRuntime.registryMirrors['../../../../../escaped']")
    assert not (tmp_path / "escaped").exists()


def test_render_writes_nothing_outside_out(run, spec: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out" / "w1").mkdir(parents=True)
    (tmp_path / "out" / "w1" / "etc").symlink_to(elsewhere)
    result = run("render", "--out", "out")
    _one_line_refusal(result, "w1's /etc/containerd/config.toml would be written outside out")
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "out" / "cp1").exists()  # refused before writing anything


def test_render_refuses_a_path_that_climbs_out(
    run, spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    climbing = RenderedFile(PurePosixPath("/etc/../../../escaped.toml"), "x")
    monkeypatch.setattr(render_command, "files_for", lambda cluster, host: [climbing])
    result = run("render", "--out", "out/deeper")
    _one_line_refusal(result, "would be written outside out/deeper")
    assert not (tmp_path / "escaped.toml").exists()


def test_init_into_a_missing_directory(run, tmp_path: Path) -> None:
    result = run("init", "-f", "nowhere/cluster.yaml")
    _one_line_refusal(result, "no directory nowhere; create it first")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("command", ["init", "validate", "render"])
def test_a_directory_as_the_cluster_file(run, tmp_path: Path, command: str) -> None:
    (tmp_path / "site").mkdir()
    result = run(command, "-f", "site", *(["--force"] if command == "init" else []))
    _one_line_refusal(result, "site is a directory; -f takes the cluster file, like site/cluster")


@pytest.mark.parametrize(
    ("first", "hosts"),
    [
        ("255.255.255.254", 5),
        ("10.0.0.252", 4),
        ("10.0.0.250", 7),
        ("fd00::ffff:ffff:ffff:fffe", 3),
    ],
)
def test_init_addresses_that_run_out(run, tmp_path: Path, first: str, hosts: int) -> None:
    result = run("init", "--addresses", first, "--workers", str(hosts - 1))
    _one_line_refusal(result, f"--addresses: {hosts} addresses counted up from {first} run past")
    assert "comma-separated" in result.output
    assert not (tmp_path / "cluster.yaml").exists()


def test_init_counts_up_to_the_last_host_of_a_24(run, tmp_path: Path) -> None:
    assert run("init", "--addresses", "10.0.0.252", "--workers", "3").exit_code == 2  # .255
    assert run("init", "--addresses", "10.0.0.252", "--workers", "2").exit_code == 0
    data = yaml.safe_load((tmp_path / "cluster.yaml").read_text())
    assert [h["address"] for h in data["hosts"]] == ["10.0.0.252", "10.0.0.253", "10.0.0.254"]


def test_up_without_the_ssh_client(
    run, spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(spec.read_text())
    cp1 = data["hosts"][0]
    # Nothing listens there: a run that tried to connect would fail at once, not hang.
    data["hosts"] = [
        {**cp1, "address": "127.0.0.1", "nodeIP": cp1["address"], "ssh": {"port": _closed_port()}}
    ]
    spec.write_text(yaml.safe_dump(data))
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run("up")
    _one_line_refusal(result, "ssh is not installed (not on PATH)")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_validate_names_a_missing_backup_key(run, spec: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(spec.read_text())
    data["backup"] = {"encryptionKeyFile": "keys/backup.key"}
    spec.write_text(yaml.safe_dump(data))
    result = run("validate")
    key = tmp_path / "keys" / "backup.key"
    _one_line_refusal(result, f"backup.encryptionKeyFile: {key}: no such file", "etcd keygen")
    key.parent.mkdir()
    key.write_text("x")
    assert run("validate").exit_code == 0


def test_validate_names_a_missing_ssh_key(run, spec: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(spec.read_text())
    data["hosts"][1]["ssh"] = {"key": "keys/w1"}
    spec.write_text(yaml.safe_dump(data))
    result = run("validate")
    _one_line_refusal(result, f"hosts[1].ssh.key: {tmp_path / 'keys' / 'w1'}: no such file")


def test_inventory_yaml_and_json(run, spec: Path) -> None:
    inventory = yaml.safe_load(run("inventory").output)["all"]
    assert inventory["children"]["control_plane"]["hosts"] == {"cp1": {}}
    assert inventory["children"]["workers"]["hosts"] == {"w1": {}}
    assert inventory["children"]["etcd"]["hosts"] == {"cp1": {}}
    assert inventory["hosts"]["w1"]["ansible_host"] == "10.0.0.21"
    assert "StrictHostKeyChecking=accept-new" in inventory["vars"]["ansible_ssh_common_args"]
    dynamic = json.loads(run("inventory", "-o", "json").output)
    assert dynamic["workers"] == {"hosts": ["w1"]}
    assert dynamic["_meta"]["hostvars"]["cp1"]["node_ip"] == "10.0.0.11"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_inventory_of_examples(run, example: Path) -> None:
    result = run("inventory", "-f", str(example), "-o", "json")
    assert result.exit_code == 0
    dynamic = json.loads(result.output)
    hosts = set(dynamic["_meta"]["hostvars"])
    grouped = {h for g in ("control_plane", "workers", "etcd") for h in dynamic[g]["hosts"]}
    assert grouped == hosts


def test_console_script_and_module_entry_points(spec: Path) -> None:
    env = {**os.environ, "K8SBOOT_FILE": str(spec)}
    module = subprocess.run(
        [sys.executable, "-m", "k8sboot", "validate"], capture_output=True, text=True, env=env
    )
    assert module.returncode == 0, module.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "k8sboot", "validate", "-f", "/nonexistent"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_debug_shows_the_traceback(spec: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "k8sboot", "validate", "-f", "/nonexistent", "--debug"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "Traceback" in bad.stderr


def test_shell_completion_script() -> None:
    env = {**os.environ, "_K8SBOOT_COMPLETE": "bash_source"}
    script = subprocess.run(
        [sys.executable, "-m", "k8sboot"], capture_output=True, text=True, env=env
    )
    assert "_k8sboot_completion" in script.stdout


def test_up_against_an_unreachable_host_fails_with_one_line(run, tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["hosts"] = [
        {
            "name": "cp1",
            "address": "127.0.0.1",
            "nodeIP": "10.0.0.11",
            "roles": ["control-plane"],
            "ssh": {"port": 1},
        }
    ]
    data["ssh"] = {"connectTimeout": 2}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(data))
    result = run("up")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: cp1: cannot reach 127.0.0.1:1 over SSH")
    assert "Traceback" not in result.output


def test_reset_and_down_need_yes(run, spec: Path) -> None:
    result = run("reset")
    assert result.exit_code == 2 and "pass --yes" in result.output
    assert run("down", "--vagrant").exit_code == 2


def test_a_second_run_is_refused_while_one_holds_the_lock(run, spec: Path, tmp_path) -> None:
    from k8sboot.lock import ClusterLock

    state = tmp_path / ".k8sboot" / "test"
    state.mkdir(parents=True)
    with ClusterLock(state / "lock", "up"):
        result = run("up")
    assert result.exit_code == 3
    assert "is running `k8sboot up` on this cluster" in result.output


def test_the_error_line_masks_secrets_the_run_learned(
    run, spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed join's message may quote its command line; the token learned during the
    run is masked there as in the run log."""
    from k8sboot import pipeline
    from k8sboot.errors import MachineError
    from k8sboot.runlog import RunLog

    token = "abcdef.0123456789abcdef"

    def failing_run(workflow, cluster, reporter, **_: object) -> None:
        RunLog(None, reporter.mask).mask.add(token)  # as the kubeadm executor does
        raise MachineError(f"w1: kubeadm join --token {token} failed")

    monkeypatch.setattr(pipeline, "run", failing_run)
    result = run("up", "-f", str(spec))
    assert result.exit_code == 1
    assert token not in result.output and "0123456789abcdef" not in result.output
    assert result.output.strip() == "error: w1: kubeadm join --token <masked> failed"
