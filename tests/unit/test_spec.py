from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from k8sboot.errors import SpecError, UserError
from k8sboot.spec import load_spec, spec_from_text
from k8sboot.spec.load import format_path
from k8sboot.versions import DEFAULT_VERSION

from .conftest import EXAMPLES, load_data


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    loaded = load_spec(path)
    assert loaded.cluster.hosts
    assert loaded.warnings == []


def test_defaults(base: dict) -> None:
    cluster = load_data(base).cluster
    assert cluster.kubernetes.version == DEFAULT_VERSION
    assert cluster.release.kubeadm_api == "v1beta4"
    assert cluster.endpoint == "10.0.0.11:6443"
    assert cluster.networking.cni == "flannel"
    assert cluster.ssh.host_key_policy == "accept-new"
    assert cluster.state_dir == Path("/work/.k8sboot/test")
    assert cluster.backup.directory == Path("/work/.k8sboot/test/backups")
    assert [h.name for h in cluster.etcd_members] == ["cp1"]


def test_relative_paths_are_relative_to_the_cluster_file(base: dict) -> None:
    base["ssh"] = {"key": "keys/id"}
    base["stateDir"] = "state"
    cluster = load_data(base, Path("/srv/site/cluster.yaml")).cluster
    assert cluster.ssh.key == Path("/srv/site/keys/id")
    assert cluster.state_dir == Path("/srv/site/state")


def test_version_1_30_uses_v1beta3(base: dict) -> None:
    base["kubernetes"] = {"version": "v1.30.2"}
    cluster = load_data(base).cluster
    assert cluster.kubernetes.version == "1.30.2"
    assert cluster.release.kubeadm_api == "v1beta3"
    assert cluster.sandbox_image.endswith("pause:3.9")


def _set(data: dict, path: str, value: object) -> None:
    """Set a dotted path like 'hosts.0.address' in nested dicts and lists."""
    *parents, last = path.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data.setdefault(part, {})
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


BAD = [
    ("hosts.0.address", "10.0.0.300", "hosts[0].address: '10.0.0.300' is not an IP address"),
    ("hosts.0.adress", "10.0.0.1", "hosts[0].adress: unknown key (did you mean 'address'?)"),
    ("hosts.1.roles", ["wroker"], "hosts[1].roles[0]: 'wroker' is not one of"),
    ("hosts.1.roles", [], "hosts[1].roles: must not be empty"),
    ("hosts.1.roles", ["worker", "worker"], "hosts[1]: roles ['worker', 'worker'] lists a role"),
    ("hosts.1.name", "W_1", "hosts[1].name: 'W_1' is not a valid node name"),
    ("hosts.1.ssh", {"port": 70000}, "hosts[1].ssh.port: 70000 must be at most 65535"),
    ("hosts.1.ssh", {"port": "ssh"}, "hosts[1].ssh.port: 'ssh' is not a whole number"),
    ("name", "My Cluster", "name: 'My Cluster' is not a valid name"),
    ("apiVersion", "k8sboot/v1", "apiVersion: 'k8sboot/v1' is not one of 'k8sboot/v1alpha1'"),
    ("kubernetes.version", "1.29.4", "kubernetes.version: Kubernetes 1.29.4 is not supported"),
    ("kubernetes.version", "latest", "kubernetes.version: 'latest' is not a Kubernetes version"),
    ("networking.cni", "flanel", "networking.cni: 'flanel' is not one of"),
    ("networking.podSubnet", "10.244.0.1/16", "networking.podSubnet: '10.244.0.1/16' is not a"),
    ("networking.serviceSubnet", "10.244.0.0/20", "networking.serviceSubnet: 10.244.0.0/20 over"),
    ("networking.serviceSubnet", "10.0.0.0/8", "networking.serviceSubnet: 10.0.0.0/8 contains"),
    ("networking.podSubnet", "10.240.0.0/26", "networking.podSubnet: 10.240.0.0/26 is smaller"),
    ("ssh.hostKeyPolicy", "no", "ssh.hostKeyPolicy: 'no' is not one of"),
    ("hosts.1.address", "10.0.0.11", "hosts[1].address: '10.0.0.11' (SSH port 22) is also"),
    ("hosts.1.name", "cp1", "hosts[1].name: 'cp1' is also hosts[0]"),
    ("hosts.0.address", "127.0.0.1", "hosts[0].address: '127.0.0.1' is a loopback address"),
    ("hosts.0.address", "cp1.example.com", "hosts[0].nodeIP: required when the address is a"),
    ("hosts.0.address", "cp_1", "hosts[0].address: 'cp_1' is neither an IP address nor a DNS"),
    ("ssh.bastion", {"adress": "b"}, "ssh.bastion.adress: unknown key (did you mean 'address'?)"),
    ("ssh.bastion", {"address": "b", "port": 0}, "ssh.bastion.port: 0 must be at least 1"),
    ("ssh.bastion", {"user": "ops"}, "ssh.bastion.address: required"),
    ("hosts.1.roles", ["etcd"], "hosts[1].roles: role etcd needs etcd.topology: external"),
    ("etcd.topology", "external", "etcd.topology: external etcd needs hosts with the role etcd"),
    ("controlPlaneEndpoint.type", "kube-vip", "controlPlaneEndpoint.address: required with"),
    ("controlPlaneEndpoint.port", 443, "controlPlaneEndpoint.port: must be 6443 with type"),
    ("packages.source", "mirror", "packages.url: required with source mirror"),
    ("packages.path", "/srv/debs", "packages.path: only used with source directory"),
    (
        "containerRuntime.registryMirrors",
        {"docker.io": ["ftp://x"]},
        "containerRuntime.registryMirrors.docker.io[0]: 'ftp://x' is not an http",
    ),
    ("backup.retention", {"last": 0}, "backup.retention.last: 0 must be at least 1"),
    ("hosts", [], "hosts: must not be empty"),
    ("hosts", "cp1", "hosts: expected a list, found a string"),
    ("kubernetes", ["1.33"], "kubernetes: expected a mapping, found a list"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_the_field(base: dict, path: str, value: object, expected: str) -> None:
    _set(base, path, value)
    with pytest.raises(SpecError) as caught:
        load_data(base)
    problems = caught.value.problems
    assert any(p.startswith(expected) for p in problems), problems
    assert all("\n" not in p for p in problems)
    assert "\n" not in str(caught.value)


def test_a_host_may_be_reached_by_name_and_keeps_its_node_ip(base: dict) -> None:
    base["hosts"][0].update(address="cp1.example.com", nodeIP="10.0.0.11")
    base["ssh"] = {"configFile": "ssh/config", "bastion": {"address": "bastion.example.com"}}
    cluster = load_data(base, Path("/srv/site/cluster.yaml")).cluster
    host = cluster.host("cp1")
    assert (host.address, host.ip) == ("cp1.example.com", "10.0.0.11")
    assert cluster.endpoint == "10.0.0.11:6443"
    assert cluster.ssh.config_file == Path("/srv/site/ssh/config")
    assert cluster.ssh.bastion is not None
    assert cluster.ssh.bastion.address == "bastion.example.com"


def test_a_host_reached_by_name_without_a_node_ip_is_one_problem(base: dict) -> None:
    base["hosts"][1]["address"] = "w1.example.com"
    with pytest.raises(SpecError) as caught:
        load_data(base)
    assert caught.value.problems == [
        "hosts[1].nodeIP: required when the address is a name ('w1.example.com'): the node IP "
        "Kubernetes uses is an IP address"
    ]


def test_etcd_certificates_name_a_host_reached_by_name(base: dict) -> None:
    from k8sboot.etcd.topology import names_of

    base["hosts"][0].update(address="cp1.example.com", nodeIP="10.0.0.11")
    dns, ips = names_of(load_data(base).cluster.host("cp1"))
    assert "cp1.example.com" in dns
    assert ips == ("10.0.0.11", "127.0.0.1", "::1")


def test_missing_required_fields(base: dict) -> None:
    del base["hosts"][0]["address"]
    del base["name"]
    with pytest.raises(SpecError) as caught:
        load_data(base)
    assert set(caught.value.problems) == {"name: required", "hosts[0].address: required"}
    assert str(caught.value).endswith("(and 1 more; `k8sboot validate` lists all)")


def test_no_control_plane(base: dict) -> None:
    base["hosts"] = [{"name": "w1", "address": "10.0.0.21", "roles": ["worker"]}]
    with pytest.raises(SpecError, match="hosts: no host has the role control-plane"):
        load_data(base)


def test_ha_needs_an_endpoint(base: dict) -> None:
    base["hosts"].append({"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]})
    base["hosts"].append({"name": "cp3", "address": "10.0.0.13", "roles": ["control-plane"]})
    with pytest.raises(SpecError, match=r"controlPlaneEndpoint.type: 3 control-plane hosts"):
        load_data(base)
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.10"}
    assert load_data(base).cluster.endpoint == "10.0.0.10:6443"


def test_endpoint_must_not_be_a_host_address(base: dict) -> None:
    base["controlPlaneEndpoint"] = {"type": "kube-vip", "address": "10.0.0.21"}
    with pytest.raises(SpecError, match="is hosts\\[1\\]'s own address"):
        load_data(base)


def test_even_etcd_members_is_a_warning(base: dict) -> None:
    base["hosts"].append({"name": "cp2", "address": "10.0.0.12", "roles": ["control-plane"]})
    base["controlPlaneEndpoint"] = {"type": "load-balancer", "address": "lb.example.com"}
    loaded = load_data(base)
    assert [str(w) for w in loaded.warnings] == [
        "etcd: 2 etcd members tolerate no more failures than 1; use an odd number (1, 3 or 5)"
    ]


def test_vagrant_style_hosts_share_an_address_on_different_ports(base: dict) -> None:
    base["hosts"] = [
        {
            "name": "cp1",
            "address": "127.0.0.1",
            "nodeIP": "192.168.56.11",
            "roles": ["control-plane"],
            "ssh": {"port": 2222},
        },
        {
            "name": "w1",
            "address": "127.0.0.1",
            "nodeIP": "192.168.56.12",
            "roles": ["worker"],
            "ssh": {"port": 2200},
        },
    ]
    cluster = load_data(base).cluster
    assert [h.ip for h in cluster.hosts] == ["192.168.56.11", "192.168.56.12"]


def test_duplicate_node_ips_are_refused(base: dict) -> None:
    base["hosts"][0]["nodeIP"] = "192.168.56.11"
    base["hosts"][1]["nodeIP"] = "192.168.56.11"
    with pytest.raises(SpecError, match=r"hosts\[1\].nodeIP: '192.168.56.11' is also the node IP"):
        load_data(base)


def test_yaml_errors_point_at_the_line() -> None:
    text = "apiVersion: k8sboot/v1alpha1\nkind: Cluster\nname: a: b\n"
    with pytest.raises(UserError, match=r"^c.yaml:3:8: mapping values are not allowed here$"):
        spec_from_text(text, Path("c.yaml"))


def test_duplicate_keys_are_refused() -> None:
    text = "apiVersion: k8sboot/v1alpha1\nkind: Cluster\nname: a\nname: b\n"
    with pytest.raises(UserError, match=r"c.yaml:4:1: key 'name' appears twice"):
        spec_from_text(text, Path("c.yaml"))


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n", "42\n"])
def test_not_a_mapping(text: str) -> None:
    with pytest.raises(SpecError, match="expected a mapping with apiVersion"):
        spec_from_text(text, Path("c.yaml"))


VALID_TEXT = """\
apiVersion: k8sboot/v1alpha1
kind: Cluster
name: test
hosts:
  - {name: cp1, address: 10.0.0.11, roles: [control-plane]}
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # YAML 1.1 would read these as 1, 1, 90 and 8: numbers must be written as numbers.
        ("ssh: {port: yes}", "ssh.port: 'yes' is not a whole number"),
        ("ssh: {connectTimeout: on}", "ssh.connectTimeout: 'on' is not a whole number"),
        ("ssh: {port: 1:30}", "ssh.port: '1:30' is not a whole number"),
        ("ssh: {port: '22'}", "ssh.port: '22' is not a whole number"),
        ("ssh: {port: 22.0}", "ssh.port: 22.0 is not a whole number"),
        ("ssh: {port: true}", "ssh.port: True is not a whole number"),
        ("backup: {retention: {daily: 1e3}}", "backup.retention.daily: 1000.0 is not a whole"),
        ("backup: {retention: {hourly: 100000}}", "backup.retention.hourly: 100000 must be at"),
        ("ssh: {port: 0}", "ssh.port: 0 must be at least 1"),
    ],
)
def test_numbers_are_never_coerced(extra: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_from_text(f"{VALID_TEXT}{extra}\n", Path("c.yaml"))
    assert caught.value.problems[0].startswith(expected), caught.value.problems


def test_yaml_1_2_scalars() -> None:
    text = f"{VALID_TEXT}ssh: {{user: yes, port: 0x16}}\nbackup: {{retention: {{last: 010}}}}\n"
    cluster = spec_from_text(text, Path("c.yaml")).cluster
    assert (cluster.ssh.user, cluster.ssh.port) == ("yes", 22)
    assert cluster.backup.retention.last == 10  # not YAML 1.1's octal 8


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (f"ssh: {{port: {'9' * 5000}}}", r"c.yaml:6:13: a number of 5000 digits is too large"),
        (
            f"backup: {{retention: {{last: -{'1' * 5000}}}}}",
            r"c.yaml:6:28: a number of 5000 digits is too large",
        ),
        ("? [a, b]\n: 1", r"c.yaml:6:3: a key must be a single value, not a list"),
        ("{a: 1}: 1", r"c.yaml:6:1: a key must be a single value, not a mapping"),
        (
            "ssh: &s {user: a}\nx:\n  <<: *s",
            r"c.yaml:8:3: YAML merge keys \(<<\) are not supported",
        ),
        ("x:\n  !!merge <<: {a: 1}", r"c.yaml:7:3: YAML merge keys \(<<\) are not supported"),
        ("---\nname: other", r"c.yaml:6:1: a second YAML document; a cluster file holds one"),
        ("ssh: {port: !!int abc}", r"c.yaml:6:13: cannot read 'abc' as !!int"),
        ("ssh: {port: !!float 1.x}", r"c.yaml:6:13: cannot read '1.x' as !!float"),
        ('ssh: {user: "\\x01"}\n\x01', r"c.yaml: not valid YAML \(unacceptable character"),
    ],
)
def test_yaml_that_cannot_be_a_spec_is_one_clear_line(extra: str, expected: str) -> None:
    with pytest.raises(UserError) as caught:
        spec_from_text(f"{VALID_TEXT}{extra}\n", Path("c.yaml"))
    assert not isinstance(caught.value, SpecError)
    assert re.match(expected, str(caught.value)), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "registry",
    ["../../../../tmp/x", "..", "a/b", "Docker.io", "reg:0", "reg:65536", "::1", "http://reg", ""],
)
def test_registry_keys_are_host_names(base: dict, registry: str) -> None:
    base["containerRuntime"] = {"registryMirrors": {registry: ["https://mirror.internal"]}}
    with pytest.raises(SpecError) as caught:
        load_data(base)
    assert caught.value.problems == [
        f"{format_path(('containerRuntime', 'registryMirrors', registry))}: {registry!r} is not a "
        "registry host: write host[:port] with a DNS name or IP address (IPv6 in brackets), "
        "like registry.example.com:5000, or _default"
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file; write one with `k8sboot init`"):
        load_spec(tmp_path / "cluster.yaml")


# Arbitrary YAML must give a valid spec or a clear SpecError/UserError, never anything else.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["control-plane", "worker", "etcd", "10.0.0.1", "1.33.1", "flannel"]),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "apiVersion",
            "kind",
            "name",
            "hosts",
            "address",
            "roles",
            "kubernetes",
            "version",
            "networking",
            "podSubnet",
            "ssh",
            "port",
            "controlPlaneEndpoint",
            "type",
            "etcd",
        ]
    ),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_yaml_gives_a_spec_or_a_clear_error(document: object) -> None:
    text = yaml.safe_dump(document)
    try:
        spec_from_text(text, Path("fuzz.yaml"))
    except SpecError as exc:
        assert exc.problems and all(p and "\n" not in p for p in exc.problems)
        assert "Traceback" not in str(exc)
    except UserError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_spec_or_a_clear_error(text: str) -> None:
    try:
        spec_from_text(text, Path("fuzz.yaml"))
    except UserError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "address": scalars,
            "name": scalars,
            "roles": st.lists(scalars, max_size=3),
            "nodeIP": scalars,
            "interface": scalars,
            "ssh": st.dictionaries(keys, scalars),
        },
    )
)
def test_fuzzed_hosts_in_an_otherwise_valid_file(host: dict) -> None:
    data = {"apiVersion": "k8sboot/v1alpha1", "kind": "Cluster", "name": "x", "hosts": [host]}
    try:
        load_data(data)
    except SpecError as exc:
        assert all(
            p.startswith(("hosts", "controlPlaneEndpoint", "networking", "etcd"))
            for p in exc.problems
        ), exc.problems
