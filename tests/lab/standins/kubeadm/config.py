"""Reading kubeadm configuration files strictly, defaulting them, and writing the
ClusterConfiguration back in the API version the kubeadm release prefers."""

from __future__ import annotations

import copy
import socket
import sys

import yaml

from .. import versions
from . import apifields
from .errors import KubeadmError

KUBEADM_GROUP = "kubeadm.k8s.io"
COMPONENT_APIS = {
    "kubelet.config.k8s.io/v1beta1": "KubeletConfiguration",
    "kubeproxy.config.k8s.io/v1alpha1": "KubeProxyConfiguration",
}
DEFAULT_CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
DEFAULT_TOKEN_GROUPS = ["system:bootstrappers:kubeadm:default-node-token"]
DEFAULT_TIMEOUTS = {
    "controlPlaneComponentHealthCheck": "4m0s",
    "kubeletHealthCheck": "4m0s",
    "kubernetesAPICall": "1m0s",
    "etcdAPICall": "2m0s",
    "tlsBootstrap": "5m0s",
    "discovery": "5m0s",
    "upgradeManifests": "5m0s",
}
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def warn(msg: str) -> None:
    print(f"W{msg}", file=sys.stderr)


def parse_duration(s: str | int | None, default: float = 0) -> float:
    """Go duration strings ("1h30m0s", "15m", "90s") to seconds."""
    if s is None or s == "":
        return default
    if isinstance(s, (int, float)):
        return float(s)
    total, num = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    i = 0
    while i < len(s):
        ch = s[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if s[i : i + 2] == "ms" else ch
        if unit not in units or not num:
            raise KubeadmError(f'time: invalid duration "{s}"')
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    if num:
        raise KubeadmError(f'time: missing unit in duration "{s}"')
    return total


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def args_to_list(value) -> list[dict]:
    """extraArgs in either API form (v1beta3 map, v1beta4 list) to the list form."""
    if not value:
        return []
    if isinstance(value, dict):
        return [{"name": k, "value": str(v)} for k, v in sorted(value.items())]
    return [{"name": a["name"], "value": str(a.get("value", ""))} for a in value]


def arg_value(args: list[dict], name: str) -> str | None:
    for a in args:
        if a["name"] == name:
            return a["value"]
    return None


class Config:
    """An InitConfiguration or JoinConfiguration with the ClusterConfiguration and the
    component configs that came with it, defaulted."""

    def __init__(self):
        self.api_version = ""
        self.init: dict = {}
        self.join: dict | None = None
        self.cluster: dict = {}
        self.kubelet: dict | None = None
        self.kubeproxy: dict | None = None
        self.reset: dict | None = None

    @property
    def node_reg(self) -> dict:
        return (self.join if self.join is not None else self.init)["nodeRegistration"]

    @property
    def node_name(self) -> str:
        return self.node_reg["name"]

    @property
    def minor(self) -> int:
        return versions.minor(self.cluster.get("kubernetesVersion"))

    def timeout(self, name: str) -> float:
        src = self.join if self.join is not None else self.init
        return parse_duration(
            (src.get("timeouts") or {}).get(name), parse_duration(DEFAULT_TIMEOUTS[name])
        )


def _load_docs(path: str) -> list[dict]:
    try:
        with open(path) as f:  # a path given on the command line, not one of kubeadm's
            text = f.read()
    except OSError as e:
        raise KubeadmError(f'unable to read config from "{path}" : {e}') from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise KubeadmError(f"error converting YAML to JSON: {e}") from e
    return docs


def _gvk_text(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f'schema.GroupVersionKind{{Group:"{group}", Version:"{version}", Kind:"{kind}"}}'


def _strict(doc: dict, minor: int, component: bool) -> None:
    api, kind = doc["apiVersion"], doc["kind"]
    sch = apifields.schema(api, minor)
    node = (sch or {}).get(kind)
    if node is None:
        return
    unknown = apifields.unknown_fields(doc, node)
    if not unknown:
        return
    msg = "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
    if component:
        # kubeadm reports unknown fields of component configs and goes on.
        warn(f"{_ts()} config.go:0] {_gvk_text(api, kind)}: {msg}")
        return
    raise KubeadmError(f"error unmarshaling configuration {_gvk_text(api, kind)}: {msg}")


def _ts() -> str:
    import datetime as dt

    t = dt.datetime.now()
    return t.strftime("%m%d %H:%M:%S.%f") + f" {1:7d}"


def load(path: str, want: str) -> Config:
    """Read `path` for `kubeadm init` (want="init") or `kubeadm join` (want="join")."""
    kubeadm_minor = versions.minor()
    accepted = versions.kubeadm_api_versions(kubeadm_minor)
    cfg = Config()
    seen: set[str] = set()
    for doc in _load_docs(path):
        if not isinstance(doc, dict):
            raise KubeadmError("error unmarshaling configuration: document is not a mapping")
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if not api or not kind:
            raise KubeadmError(
                "Object 'Kind' is missing in '" + yaml.safe_dump(doc).strip() + "'"
                if not kind
                else "Object 'apiVersion' is missing"
            )
        if api.startswith(KUBEADM_GROUP + "/"):
            if api not in accepted:
                raise KubeadmError(
                    f'no kind "{kind}" is registered for version "{api}" in '
                    'scheme "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"'
                )
            if api != accepted[0]:
                warn(
                    f"{_ts()} common.go:101] your configuration file uses a deprecated API "
                    f'spec: "{api}" (kind: "{kind}"). Please use \'kubeadm config migrate '
                    "--old-config old-config-file --new-config new-config-file', which will "
                    "write the new, similar spec using a newer API version."
                )
            if kind not in (
                "InitConfiguration",
                "ClusterConfiguration",
                "JoinConfiguration",
                "ResetConfiguration",
                "UpgradeConfiguration",
            ):
                raise KubeadmError(
                    f'no kind "{kind}" is registered for version "{api}" in '
                    'scheme "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"'
                )
            if kind in seen:
                raise KubeadmError(
                    f"invalid configuration: kind {kind!r} is specified twice in YAML file"
                )
            seen.add(kind)
            _strict(doc, kubeadm_minor if api.endswith("v1beta4") else 30, component=False)
            cfg.api_version = api
            body = _normalise(copy.deepcopy(doc))
            if kind == "InitConfiguration":
                cfg.init = body
            elif kind == "ClusterConfiguration":
                cfg.cluster = body
            elif kind == "JoinConfiguration":
                cfg.join = body
            elif kind == "ResetConfiguration":
                cfg.reset = body
        elif COMPONENT_APIS.get(api) == kind:
            _strict(doc, kubeadm_minor, component=True)
            if kind == "KubeletConfiguration":
                cfg.kubelet = doc
            else:
                cfg.kubeproxy = doc
        else:
            warn(
                f"{_ts()} common.go:0] [config] WARNING: Ignored configuration document with "
                f"GroupVersionKind {api}, Kind={kind}"
            )
    if want == "init" and cfg.join is not None and not cfg.init and not cfg.cluster:
        raise KubeadmError(
            "expected InitConfiguration or ClusterConfiguration, got JoinConfiguration"
        )
    if want == "join" and cfg.join is None:
        raise KubeadmError(f'no JoinConfiguration kind was found in the YAML file "{path}"')
    default_init(cfg) if want == "init" else default_join(cfg)
    return cfg


def _normalise(doc: dict) -> dict:
    """v1beta3 shapes to the v1beta4 shapes the rest of the stand-in uses."""
    nr = doc.get("nodeRegistration")
    if isinstance(nr, dict):
        nr["kubeletExtraArgs"] = args_to_list(nr.get("kubeletExtraArgs"))
    for comp in ("apiServer", "controllerManager", "scheduler"):
        if isinstance(doc.get(comp), dict):
            doc[comp]["extraArgs"] = args_to_list(doc[comp].get("extraArgs"))
    local = (doc.get("etcd") or {}).get("local")
    if isinstance(local, dict):
        local["extraArgs"] = args_to_list(local.get("extraArgs"))
    api = doc.get("apiServer") or {}
    if "timeoutForControlPlane" in api:
        doc.setdefault("_timeouts", {})["controlPlaneComponentHealthCheck"] = api.pop(
            "timeoutForControlPlane"
        )
    disc = doc.get("discovery") or {}
    if "timeout" in disc:
        doc.setdefault("timeouts", {})["discovery"] = disc.pop("timeout")
    return doc


def default_node_registration(nr: dict, control_plane: bool) -> None:
    nr.setdefault("name", socket.gethostname().lower())
    nr.setdefault("criSocket", DEFAULT_CRI_SOCKET)
    nr.setdefault("imagePullPolicy", "IfNotPresent")
    nr.setdefault("kubeletExtraArgs", [])
    if "taints" not in nr or nr["taints"] is None:
        nr["taints"] = [dict(CONTROL_PLANE_TAINT)] if control_plane else []


def default_cluster(c: dict) -> None:
    own = versions.kubernetes_version()
    c.setdefault("kubernetesVersion", own)
    if not str(c["kubernetesVersion"]).startswith("v"):
        c["kubernetesVersion"] = "v" + str(c["kubernetesVersion"])
    if c["kubernetesVersion"].startswith("vstable") or c["kubernetesVersion"] == "vlatest":
        c["kubernetesVersion"] = own
    c.setdefault("clusterName", "kubernetes")
    c.setdefault("controlPlaneEndpoint", "")
    c.setdefault("certificatesDir", "/etc/kubernetes/pki")
    c.setdefault("imageRepository", "registry.k8s.io")
    net = c.setdefault("networking", {})
    net.setdefault("serviceSubnet", "10.96.0.0/12")
    net.setdefault("dnsDomain", "cluster.local")
    for comp in ("apiServer", "controllerManager", "scheduler"):
        c.setdefault(comp, {}).setdefault("extraArgs", [])
    c["apiServer"].setdefault("certSANs", [])
    etcd = c.setdefault("etcd", {})
    if "external" not in etcd:
        local = etcd.setdefault("local", {})
        local.setdefault("dataDir", "/var/lib/etcd")
        local.setdefault("extraArgs", [])
    c.setdefault("dns", {})
    c.setdefault("encryptionAlgorithm", "RSA-2048")


def _check_version(c: dict) -> None:
    own = versions.minor()
    want = versions.minor(c["kubernetesVersion"])
    if want < own - 1:
        raise KubeadmError(
            "this version of kubeadm only supports deploying clusters with the control plane "
            f"version >= 1.{own - 1}.0. Current version: {c['kubernetesVersion']}"
        )
    if want > own:
        raise KubeadmError(
            f"the specified version to deploy ({c['kubernetesVersion']}) is "
            f"newer than the kubeadm version (v1.{own}) by more than one minor"
        )


def default_init(cfg: Config) -> None:
    init = cfg.init
    default_node_registration(init.setdefault("nodeRegistration", {}), control_plane=True)
    ep = init.setdefault("localAPIEndpoint", {})
    ep.setdefault("advertiseAddress", default_address())
    ep.setdefault("bindPort", 6443)
    tokens = init.get("bootstrapTokens")
    if not tokens:
        tokens = init["bootstrapTokens"] = [{}]
    for t in tokens:
        t.setdefault("ttl", "24h0m0s")
        t.setdefault("usages", ["signing", "authentication"])
        t.setdefault("groups", list(DEFAULT_TOKEN_GROUPS))
    init.setdefault("skipPhases", [])
    timeouts = init.setdefault("timeouts", {})
    timeouts.update(cfg.cluster.pop("_timeouts", {}))
    default_cluster(cfg.cluster)
    _check_version(cfg.cluster)


def default_join(cfg: Config) -> None:
    j = cfg.join
    cp = j.get("controlPlane")
    default_node_registration(j.setdefault("nodeRegistration", {}), control_plane=cp is not None)
    if cp is not None:
        ep = cp.setdefault("localAPIEndpoint", {})
        ep.setdefault("advertiseAddress", default_address())
        ep.setdefault("bindPort", 6443)
    j.setdefault("skipPhases", [])
    j.setdefault("timeouts", {})
    disc = j.setdefault("discovery", {})
    bt = disc.get("bootstrapToken")
    if bt is None and not disc.get("file"):
        raise KubeadmError('discovery: Invalid value: "": bootstrapToken or file must be set')
    if bt is not None:
        disc.setdefault("tlsBootstrapToken", bt.get("token"))
        if not bt.get("caCertHashes") and not bt.get("unsafeSkipCAVerification"):
            raise KubeadmError(
                'discovery.bootstrapToken: Invalid value: "": using token-based '
                "discovery without caCertHashes can be unsafe. Set "
                "unsafeSkipCAVerification as true in your kubeadm config file or "
                "pass --discovery-token-unsafe-skip-ca-verification flag to continue"
            )


def default_address() -> str:
    """The address of the interface with the default route, as kubeadm picks it."""
    try:
        with open("/proc/net/route") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == "00000000":
                    iface = parts[0]
                    import fcntl
                    import struct

                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    packed = fcntl.ioctl(
                        s.fileno(), 0x8915, struct.pack("256s", iface[:15].encode())
                    )
                    return socket.inet_ntoa(packed[20:24])
    except OSError:
        pass
    raise KubeadmError("unable to select an IP from default routes.")


# --- writing ----------------------------------------------------------------------------------


def preferred_api(minor: int) -> str:
    return versions.kubeadm_api_versions(minor)[0]


def cluster_document(cfg: Config) -> dict:
    """The ClusterConfiguration kubeadm stores in the kubeadm-config ConfigMap."""
    c = copy.deepcopy(cfg.cluster)
    api = preferred_api(versions.minor())
    if api.endswith("v1beta3"):
        for comp in ("apiServer", "controllerManager", "scheduler"):
            c[comp]["extraArgs"] = {a["name"]: a["value"] for a in c[comp].get("extraArgs", [])}
            if not c[comp]["extraArgs"]:
                del c[comp]["extraArgs"]
        if "local" in c.get("etcd", {}):
            args = c["etcd"]["local"].get("extraArgs") or []
            c["etcd"]["local"]["extraArgs"] = {a["name"]: a["value"] for a in args}
            if not args:
                del c["etcd"]["local"]["extraArgs"]
        c.pop("encryptionAlgorithm", None)
        c.setdefault("apiServer", {})["timeoutForControlPlane"] = "4m0s"
    else:
        for comp in ("apiServer", "controllerManager", "scheduler"):
            if not c[comp].get("extraArgs"):
                c[comp].pop("extraArgs", None)
        if "local" in c.get("etcd", {}) and not c["etcd"]["local"].get("extraArgs"):
            c["etcd"]["local"].pop("extraArgs", None)
        c.setdefault("proxy", {})
    if not c["apiServer"].get("certSANs"):
        c["apiServer"].pop("certSANs", None)
    out = {"apiVersion": api, "kind": "ClusterConfiguration"}
    out.update({k: v for k, v in sorted(c.items()) if k not in ("apiVersion", "kind")})
    return out


def cluster_from_configmap(data: dict) -> dict:
    doc = yaml.safe_load(data.get("ClusterConfiguration") or "{}") or {}
    doc = _normalise(doc)
    default_cluster(doc)
    return doc
