"""kube-apiserver stand-in entry point: takes kube-apiserver's flags (unknown ones are
accepted and ignored, as the manifest kubeadm writes carries many)."""

from __future__ import annotations

import contextlib
import signal
import ssl
import sys
import threading
import time

from .. import versions
from ..etcd import Etcd, EtcdError
from ..paths import host
from . import auth, errors
from .registry import Registry
from .resources import BY_KIND
from .server import ApiServer
from .storage import Storage


def parse_flags(argv: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    it = iter(argv)
    for a in it:
        if not a.startswith("--"):
            continue
        if "=" in a:
            k, v = a[2:].split("=", 1)
        else:
            k, v = a[2:], "true"
        flags[k] = v
    return flags


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(host(path), "rb") as f:
        return f.read()


def bootstrap(reg: Registry, flags: dict[str, str]) -> None:
    """What upstream's post-start hooks create: system namespaces, default RBAC, the
    `kubernetes` Service and its Endpoints, the system priority classes."""

    def ensure(kind: str, obj: dict, ns: str | None = None) -> None:
        r = BY_KIND[kind]
        try:
            reg.create(r, ns, obj)
        except errors.StatusError as e:
            if e.code != 409:
                raise

    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        ensure(("", "Namespace"), {"metadata": {"name": ns}})
    for role in auth.DEFAULT_CLUSTER_ROLES:
        ensure(("rbac.authorization.k8s.io", "ClusterRole"), role)
    for b in auth.DEFAULT_CLUSTER_ROLE_BINDINGS:
        ensure(("rbac.authorization.k8s.io", "ClusterRoleBinding"), b)
    for name, value in (
        ("system-node-critical", 2000001000),
        ("system-cluster-critical", 2000000000),
    ):
        ensure(
            ("scheduling.k8s.io", "PriorityClass"),
            {
                "metadata": {"name": name},
                "value": value,
                "globalDefault": False,
                "preemptionPolicy": "PreemptLowerPriority",
                "description": "Used for system critical pods that must not be moved from their "
                "current node."
                if "node" in name
                else "Used for system critical pods that must run in the cluster, but "
                "can be moved to another node if necessary.",
            },
        )
    first_ip = str(next(reg.service_net.hosts()))
    port = int(flags.get("secure-port", "6443"))
    ensure(
        ("", "Service"),
        {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": first_ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
        },
        "default",
    )
    adv = flags.get("advertise-address")
    if adv:
        r = BY_KIND[("", "Endpoints")]
        try:
            ep = reg.get(r, "default", "kubernetes")
        except errors.StatusError:
            ep = None
        addrs = {a["ip"] for s in (ep or {}).get("subsets") or [] for a in s.get("addresses") or []}
        addrs.add(adv)
        body = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": a} for a in sorted(addrs)],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                }
            ],
        }
        if ep is None:
            ensure(("", "Endpoints"), body, "default")
        else:
            body["metadata"]["resourceVersion"] = ep["metadata"]["resourceVersion"]
            with contextlib.suppress(errors.StatusError):
                reg.update(r, "default", "kubernetes", body)


def main(argv: list[str] | None = None) -> int:
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    endpoints = [e for e in flags.get("etcd-servers", "http://127.0.0.1:2379").split(",") if e]
    etcd = Etcd(
        endpoints,
        _read(flags.get("etcd-cafile")),
        _read(flags.get("etcd-certfile")),
        _read(flags.get("etcd-keyfile")),
    )
    storage = Storage(etcd)
    reg = Registry(storage, flags.get("service-cluster-ip-range", "10.96.0.0/12"))
    authorizer = auth.Authorizer(lambda r, ns: reg.list(r, ns)[0])

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(host(flags["tls-cert-file"]), host(flags["tls-private-key-file"]))
    if flags.get("client-ca-file"):
        ctx.load_verify_locations(host(flags["client-ca-file"]))
        ctx.verify_mode = ssl.CERT_OPTIONAL

    health = {"ok": False, "at": 0.0}

    def etcd_ok() -> bool:
        if time.monotonic() - health["at"] > 1.0:
            try:
                etcd.revision()
                health["ok"] = True
            except EtcdError:
                health["ok"] = False
            health["at"] = time.monotonic()
        return health["ok"]

    bind = flags.get("bind-address", "0.0.0.0")
    port = int(flags.get("secure-port", "6443"))
    version = versions.kubernetes_version()
    server = ApiServer((bind, port), reg, authorizer, ctx, etcd_ok, version)
    print(
        f"kube-apiserver stand-in {version} serving on https://{bind}:{port}, "
        f"etcd {','.join(endpoints)}",
        file=sys.stderr,
        flush=True,
    )

    def post_start() -> None:
        while True:
            try:
                bootstrap(reg, flags)
                return
            except (EtcdError, errors.StatusError) as e:
                print(f"post-start hook: waiting for etcd: {e}", file=sys.stderr, flush=True)
                time.sleep(1)

    threading.Thread(target=post_start, daemon=True).start()

    def stop(*_):
        server.shutting_down = True
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
