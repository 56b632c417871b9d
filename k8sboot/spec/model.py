"""The cluster file's schema: desired state only, never anything observed on machines.

Field names are camelCase in the file (like Kubernetes objects) and snake_case here.
Unknown keys are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from k8sboot.kubeadm_node import API_SERVER_PORT
from k8sboot.versions import (
    CALICO_OPERATOR_SHA256,
    CALICO_OPERATOR_URL,
    DEFAULT_VERSION,
    ETCD_CHECKSUMS,
    ETCD_DOWNLOAD_URL,
    ETCD_OLDEST,
    KubeVersion,
    parse_etcd_version,
)

API_VERSION = "k8sboot/v1alpha1"

Role = Literal["control-plane", "worker", "etcd"]


def invalid(message: str) -> PydanticCustomError:
    """A validation error whose text is exactly `message` (no template expansion)."""
    return PydanticCustomError("k8sboot", "{message}", {"message": message})


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise invalid(f"{value!r} is not an IP address") from None


def _ip_network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        hint = " (host bits set)" if "host bits" in str(exc) else ""
        raise invalid(f"{value!r} is not a subnet in CIDR form like 10.244.0.0/16{hint}") from None


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise invalid(
            f"{value!r} is not a valid name (lowercase letters, digits and '-', at most 63, "
            "starting and ending with a letter or digit)"
        )
    return value


def _node_name(value: str) -> str:
    if not _DNS_NAME.match(value):
        raise invalid(
            f"{value!r} is not a valid node name (lowercase letters, digits, '-' and '.')"
        )
    return value


def _ip_or_dns_name(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    # No top-level domain is all digits: 10.0.0.300 is a mistyped address, not a name.
    if re.fullmatch(r"[0-9.]+", value):
        raise invalid(f"{value!r} is not an IP address")
    if not _DNS_NAME.match(value):
        raise invalid(f"{value!r} is neither an IP address nor a DNS name")
    return value


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _interface(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.:@-]{1,15}$", value):
        raise invalid(f"{value!r} is not a network interface name (at most 15 characters)")
    return value


def _kube_version(value: str) -> str:
    try:
        return str(KubeVersion.parse(value))
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise invalid(f"{value!r} is not an http:// or https:// URL")
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths in the cluster file are relative to the file's own directory."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value


IPAddress = Annotated[str, AfterValidator(_ip_address)]
Subnet = Annotated[str, AfterValidator(_ip_network)]
DNSLabel = Annotated[str, AfterValidator(_dns_label)]
NodeName = Annotated[str, AfterValidator(_node_name)]
Address = Annotated[str, AfterValidator(_ip_or_dns_name)]
Interface = Annotated[str, AfterValidator(_interface)]
HttpURL = Annotated[str, AfterValidator(_http_url)]
FilePath = Annotated[Path, AfterValidator(_resolve_path)]
# Strict: a whole number written as one, never a string, float or boolean.
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Count = Annotated[int, Field(strict=True, ge=0, le=1000)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, strict=False)


class HostSSH(Section):
    """Per-host SSH settings; anything unset falls back to the cluster's `ssh`."""

    user: str | None = None
    port: Port | None = None
    key: FilePath | None = None


class Host(Section):
    name: NodeName
    # Where k8sboot reaches the host over SSH: an IP address, a DNS name or a Host of the
    # operator's ssh_config. Kubernetes never uses it unless it is also the node IP.
    address: Address
    roles: list[Role] = Field(min_length=1)
    node_ip: IPAddress | None = Field(default=None, alias="nodeIP")
    interface: Interface | None = None
    ssh: HostSSH = HostSSH()

    @property
    def ip(self) -> str:
        """The node IP: the private address the node uses inside the cluster (the spec
        checks refuse a host whose address is a name and that has no nodeIP)."""
        return self.node_ip or self.address

    def has(self, role: Role) -> bool:
        return role in self.roles

    @model_validator(mode="after")
    def _unique_roles(self) -> Host:
        if len(set(self.roles)) != len(self.roles):
            raise invalid(f"roles {self.roles} lists a role twice")
        return self


class Kubernetes(Section):
    version: Annotated[str, AfterValidator(_kube_version)] = DEFAULT_VERSION
    cert_sans: list[Address] = Field(default_factory=list, alias="certSANs")
    proxy_mode: Literal["iptables", "ipvs"] = "iptables"

    @property
    def release(self) -> KubeVersion:
        return KubeVersion.parse(self.version)


class ControlPlaneEndpoint(Section):
    type: Literal["first-control-plane", "kube-vip", "load-balancer"] = "first-control-plane"
    address: Address | None = None
    port: Port = API_SERVER_PORT
    interface: Interface | None = None


def _sha256(value: str) -> str:
    if not re.match(r"^[0-9a-f]{64}$", value):
        raise invalid(f"{value!r} is not a sha256 (64 lowercase hex digits)")
    return value


class CalicoOperator(Section):
    """The Tigera operator's release manifest that `cni: calico` applies: fetched by
    k8sboot (on the machine it runs on) from `url`, which may be a mirror of the pinned
    release, and applied only when its sha256 matches."""

    url: HttpURL = CALICO_OPERATOR_URL
    sha256: Annotated[str, AfterValidator(_sha256)] = CALICO_OPERATOR_SHA256


class Networking(Section):
    pod_subnet: Subnet = "10.244.0.0/16"
    service_subnet: Subnet = "10.96.0.0/12"
    dns_domain: Annotated[str, AfterValidator(_node_name)] = "cluster.local"
    cni: Literal["flannel", "calico", "none"] = "flannel"
    calico_operator: CalicoOperator = CalicoOperator()


DEFAULT_REGISTRY = "_default"  # containerd's hosts.toml for every registry without its own
_REGISTRY_PORT = re.compile(r"^(?P<host>.+?)(:(?P<port>[0-9]{1,5}))?$")


def _registry_host(value: str) -> str:
    """A registry host as containerd names its directory under certs.d (docs/hosts.md,
    "Registry Host Namespace"): host[:port] with a DNS name or IP address, or _default.
    The key becomes a path on every host, so nothing else may pass."""
    if value == DEFAULT_REGISTRY:
        return value
    match = _REGISTRY_PORT.match(value)
    host, port = (match["host"], match["port"]) if match else (value, None)
    if host.startswith("[") and host.endswith("]"):
        valid = _is_ip(host[1:-1], version=6)
    else:
        valid = _is_ip(host, version=4) or bool(_DNS_NAME.match(host))
    if not valid or (port is not None and not 1 <= int(port) <= 65535):
        raise invalid(
            f"{value!r} is not a registry host: write host[:port] with a DNS name or IP "
            f"address (IPv6 in brackets), like registry.example.com:5000, or {DEFAULT_REGISTRY}"
        )
    return value


def _is_ip(value: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(value).version == version
    except ValueError:
        return False


RegistryHost = Annotated[str, AfterValidator(_registry_host)]


class ContainerRuntime(Section):
    sandbox_image: str | None = None
    registry_mirrors: dict[RegistryHost, list[HttpURL]] = Field(default_factory=dict)


def _etcd_version(value: str) -> str:
    parsed = parse_etcd_version(value)
    if parsed is None:
        raise invalid(f"{value!r} is not an etcd 3.5 version like 3.5.21")
    if parsed < ETCD_OLDEST:
        raise invalid(
            f"etcd {value} cannot restore Kubernetes-correctly (etcdutl snapshot restore "
            "--bump-revision --mark-compacted came with 3.5.10)"
        )
    return value


class EtcdDownload(Section):
    """Where etcd's release tarballs come from: etcd's GitHub releases, or a mirror with
    the same layout (<url>/v<version>/etcd-v<version>-linux-<arch>.tar.gz)."""

    url: HttpURL = ETCD_DOWNLOAD_URL
    # For `etcd.version`, per architecture; k8sboot pins upstream's for 3.5.12 to 3.5.24.
    sha256: dict[Literal["amd64", "arm64"], Annotated[str, AfterValidator(_sha256)]] = Field(
        default_factory=dict
    )


class Etcd(Section):
    topology: Literal["stacked", "external"] = "stacked"
    # External etcd's version (server and tools); the default is kubeadm's for the
    # Kubernetes minor. Stacked etcd's tools follow the etcd kubeadm runs.
    version: Annotated[str, AfterValidator(_etcd_version)] | None = None
    download: EtcdDownload = EtcdDownload()


class Packages(Section):
    source: Literal["upstream", "mirror", "directory"] = "upstream"
    url: HttpURL | None = None
    key_url: HttpURL | None = None
    path: FilePath | None = None


class Bastion(Section):
    """The jump host every SSH connection to the cluster's hosts goes through. Anything
    unset comes from the ssh_config, then from the cluster's `ssh` (port: 22)."""

    address: Address
    user: str | None = None
    port: Port | None = None
    key: FilePath | None = None


class SSH(Section):
    # Written in the file, user and port win over the ssh_config's (model_fields_set
    # tells them from these defaults).
    user: str = "root"
    port: Port = 22
    key: FilePath | None = None
    # OpenSSH's client configuration to read instead of ~/.ssh/config and
    # /etc/ssh/ssh_config, as `ssh -F` would.
    config_file: FilePath | None = None
    bastion: Bastion | None = None
    host_key_policy: Literal["accept-new", "strict"] = "accept-new"
    connect_timeout: Annotated[int, Field(strict=True, ge=1, le=600)] = 10


class Retention(Section):
    last: Annotated[Count, Field(ge=1)] = 7
    hourly: Count = 24
    daily: Count = 7
    weekly: Count = 4


class S3(Section):
    """An S3-compatible bucket for the backup catalogue (the optional extra k8sboot[s3]);
    credentials come from the usual AWS environment or files, never from here."""

    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+$")]
    prefix: str = ""
    endpoint: HttpURL | None = None
    region: str | None = None


class Backup(Section):
    directory: FilePath | None = None
    retention: Retention = Retention()
    encryption_key_file: FilePath | None = None
    schedule: str | None = None
    s3: S3 | None = None

    @model_validator(mode="after")
    def _one_destination(self) -> Backup:
        if self.s3 is not None and self.directory is not None:
            raise invalid("set backup.directory or backup.s3, not both")
        return self


class Cluster(Section):
    api_version: Literal["k8sboot/v1alpha1"]
    kind: Literal["Cluster"]
    name: DNSLabel
    kubernetes: Kubernetes = Kubernetes()
    hosts: list[Host] = Field(min_length=1)
    control_plane_endpoint: ControlPlaneEndpoint = ControlPlaneEndpoint()
    networking: Networking = Networking()
    container_runtime: ContainerRuntime = ContainerRuntime()
    etcd: Etcd = Etcd()
    packages: Packages = Packages()
    ssh: SSH = SSH()
    backup: Backup = Backup()
    state_dir: FilePath | None = None

    # --- derived views; the spec stays desired state only -------------------------------

    @property
    def release(self) -> KubeVersion:
        return self.kubernetes.release

    def with_role(self, role: Role) -> list[Host]:
        return [host for host in self.hosts if host.has(role)]

    @property
    def control_planes(self) -> list[Host]:
        return self.with_role("control-plane")

    @property
    def first_control_plane(self) -> Host:
        return self.control_planes[0]

    @property
    def etcd_members(self) -> list[Host]:
        """Stacked etcd runs on every control-plane node; external etcd on the etcd hosts."""
        if self.etcd.topology == "stacked":
            return self.control_planes
        return self.with_role("etcd")

    @property
    def kube_nodes(self) -> list[Host]:
        """Hosts that run a kubelet: every host with a control-plane or worker role."""
        return [h for h in self.hosts if h.has("control-plane") or h.has("worker")]

    @property
    def endpoint(self) -> str:
        """host:port that kubelets and kubectl use to reach the API servers."""
        endpoint = self.control_plane_endpoint
        address = endpoint.address or self.first_control_plane.ip
        if ":" in address:  # IPv6 literal
            address = f"[{address}]"
        return f"{address}:{endpoint.port}"

    @property
    def etcd_version(self) -> str:
        return self.etcd.version or self.release.etcd_version

    def etcd_sha256(self, version: str, arch: str) -> str | None:
        """The pinned checksum of an etcd release tarball: the cluster file's for its
        `etcd.version`, else upstream's as k8sboot knows it."""
        if version == self.etcd.version and arch in self.etcd.download.sha256:
            return self.etcd.download.sha256[arch]  # type: ignore[index]
        return ETCD_CHECKSUMS.get(version, {}).get(arch)

    @property
    def sandbox_image(self) -> str:
        return self.container_runtime.sandbox_image or self.release.pause_image

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)
