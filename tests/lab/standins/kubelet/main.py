"""The kubelet stand-in's main loop."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from ..client import ApiError, Client
from ..paths import KUBELET_CONFIG, TEST_MODE, host
from . import bootstrap, log, nodestatus
from .pods import PodRunner
from .runtime import StaticPod, read_manifests

STATUS_EVERY = 10.0
LEASE_SECONDS = 40
# Upstream's kubelet (v1.27+, kubernetes pkg/kubelet/kubelet.go fastStatusUpdateOnce and
# pkg/kubelet/kubelet_node_status.go fastNodeStatusUpdate) also checks, for its first
# nodeReadyGracePeriod after it starts, whether the node would now be Ready, and posts that
# status at once instead of at the next nodeStatusUpdateFrequency tick.
NODE_READY_GRACE = 120.0


def status_due(
    now: float, last_status: float, started: float, posted_ready: bool, ready_now: bool
) -> bool:
    """Whether the node status is posted now: every STATUS_EVERY, and, in the first
    NODE_READY_GRACE after the kubelet started, as soon as a node not yet posted Ready
    would be (upstream polls that every 100 ms; this loop every second)."""
    if now - last_status >= STATUS_EVERY:
        return True
    return not posted_ready and ready_now and now - started < NODE_READY_GRACE


def parse_args(argv: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a[2:].split("=", 1)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                k, v = a[2:], argv[i + 1]
                i += 1
            else:
                k, v = a[2:], "true"
            flags[k] = v
        i += 1
    return flags


def parse_taints(spec: str) -> list[dict]:
    out = []
    for t in filter(None, spec.split(",")):
        kv, _, effect = t.rpartition(":")
        key, _, value = kv.partition("=")
        d = {"key": key, "effect": effect}
        if value:
            d["value"] = value
        out.append(d)
    return out


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200 if self.path.startswith("/healthz") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Kubelet:
    def __init__(self, flags: dict[str, str], config: dict):
        self.flags = flags
        self.config = config
        import socket

        self.node_name = (flags.get("hostname-override") or socket.gethostname()).lower()
        self.node_ip = flags.get("node-ip") or nodestatus.default_node_ip()
        self.runtime = (
            flags.get("container-runtime-endpoint")
            or config.get("containerRuntimeEndpoint")
            or "unix:///run/containerd/containerd.sock"
        )
        self.kubeconfig = flags.get("kubeconfig", "/etc/kubernetes/kubelet.conf")
        self.bootstrap_kubeconfig = flags.get("bootstrap-kubeconfig")
        self.manifest_dir = config.get("staticPodPath") or flags.get("pod-manifest-path")
        self.static: dict[str, StaticPod] = {}
        self.client: Client | None = None
        self.registered = False
        self.last_status = 0.0
        self.started = time.monotonic()
        self.posted_ready = False
        self.node_uid = ""
        self.pod_cidr: str | None = None
        self.stopping = threading.Event()
        self.runner: PodRunner | None = None

    # --- credentials and registration ------------------------------------------------------
    def ensure_client(self) -> bool:
        if self.client is not None:
            return True
        if not os.path.exists(host(self.kubeconfig)):
            if self.bootstrap_kubeconfig and os.path.exists(host(self.bootstrap_kubeconfig)):
                try:
                    bootstrap.tls_bootstrap(
                        self.bootstrap_kubeconfig,
                        self.kubeconfig,
                        self.node_name,
                        self.stopping.is_set,
                    )
                except (ApiError, OSError) as e:
                    log.warn(f"TLS bootstrap: {e}")
                    return False
            else:
                return False
        if not os.path.exists(host(self.kubeconfig)):
            return False
        bootstrap.seed_from_kubeconfig(self.kubeconfig)
        self.client = Client.from_kubeconfig(self.kubeconfig)
        self.runner = PodRunner(self.client, self.node_name, self.node_ip)
        return True

    def register(self) -> None:
        labels = dict(
            kv.split("=", 1) for kv in filter(None, self.flags.get("node-labels", "").split(","))
        )
        taints = parse_taints(self.flags.get("register-with-taints", ""))
        body = nodestatus.node_object(
            self.node_name,
            self.node_ip,
            labels,
            taints,
            self.runtime,
            int(self.config.get("port", 10250)),
        )
        try:
            created = self.client.create(body)
            log.info(f'Successfully registered node "{self.node_name}"')
        except ApiError as e:
            if e.status != 409:
                raise
            created = self.client.get("Node", self.node_name)
            log.info(f'node "{self.node_name}" already registered; updating its status')
        self.node_uid = created["metadata"]["uid"]
        self.registered = True
        self.last_status = 0.0

    def post_status(self) -> None:
        try:
            node = self.client.get("Node", self.node_name)
        except ApiError as e:
            if e.status == 404:
                log.error(
                    f"Error updating node status, will retry: error getting node "
                    f'"{self.node_name}": nodes "{self.node_name}" not found'
                )
                return
            raise
        self.node_uid = node["metadata"]["uid"]
        self.pod_cidr = node.get("spec", {}).get("podCIDR")
        ready, reason, message = nodestatus.readiness(self.runtime)
        st = node.setdefault("status", {})
        st["conditions"] = nodestatus.conditions(ready, reason, message, st.get("conditions"))
        st["addresses"] = [
            {"type": "InternalIP", "address": self.node_ip},
            {"type": "Hostname", "address": self.node_name},
        ]
        st["nodeInfo"] = nodestatus.node_info(self.runtime)
        try:
            self.client.update(node, sub="status")
            self.posted_ready = ready
        except ApiError as e:
            log.warn(f"node status update: {e}")
        self.renew_lease()

    def _status_due(self) -> bool:
        now = time.monotonic()
        fast = not self.posted_ready and now - self.started < NODE_READY_GRACE
        # Readiness is read from the node (runtime, CNI configuration) only while it counts.
        ready_now = fast and nodestatus.readiness(self.runtime)[0]
        return status_due(now, self.last_status, self.started, self.posted_ready, ready_now)

    def renew_lease(self) -> None:
        name, ns = self.node_name, "kube-node-lease"
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": ns,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": self.node_uid}
                ],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": nodestatus.now_micro(),
            },
        }
        try:
            cur = self.client.get("Lease", name, ns)
            cur["spec"].update(body["spec"])
            self.client.update(cur)
        except ApiError as e:
            if e.status == 404:
                try:
                    self.client.create(body)
                except ApiError as e2:
                    log.warn(f"lease create: {e2}")
            else:
                log.warn(f"lease renew: {e}")

    # --- static pods -------------------------------------------------------------------------
    def sync_static(self) -> None:
        found = read_manifests(self.manifest_dir) if self.manifest_dir else {}
        for path, pod in list(self.static.items()):
            if path not in found or StaticPod(path, *found[path], self.node_name).hash != pod.hash:
                log.info(
                    f"static pod {pod.namespace}/{pod.name}: manifest "
                    f"{'changed' if path in found else 'removed'}; stopping it"
                )
                pod.stop()
                del self.static[path]
                self.delete_mirror(pod)
        for path, (manifest, raw) in found.items():
            if path not in self.static:
                self.static[path] = StaticPod(path, manifest, raw, self.node_name)
                log.info(
                    f"static pod {self.static[path].namespace}/{self.static[path].name}: "
                    f"starting from {path}"
                )
        for pod in self.static.values():
            pod.sync()

    def delete_mirror(self, pod: StaticPod) -> None:
        if self.client is None:
            return
        with contextlib.suppress(ApiError, OSError):
            self.client.delete("Pod", pod.name, pod.namespace, {"gracePeriodSeconds": 0})

    def sync_mirrors(self) -> None:
        for pod in self.static.values():
            md = dict(pod.manifest.get("metadata") or {})
            ann = dict(md.get("annotations") or {})
            ann.update(
                {
                    "kubernetes.io/config.hash": pod.hash,
                    "kubernetes.io/config.mirror": pod.hash,
                    "kubernetes.io/config.seen": pod.seen,
                    "kubernetes.io/config.source": "file",
                }
            )
            statuses = [c.status() for c in pod.containers]
            ready = all(s["ready"] for s in statuses) and bool(statuses)
            running = all(s["started"] for s in statuses) and bool(statuses)
            status = {
                "phase": "Running" if running else "Pending",
                "hostIP": self.node_ip,
                "hostIPs": [{"ip": self.node_ip}],
                "podIP": self.node_ip,
                "podIPs": [{"ip": self.node_ip}],
                "qosClass": "Burstable",
                "conditions": PodRunner._conditions({}, ready),
                "containerStatuses": statuses,
            }
            try:
                mirror = self.client.get("Pod", pod.name, pod.namespace)
            except ApiError as e:
                if e.status != 404:
                    raise
                spec = dict(pod.manifest.get("spec") or {}, nodeName=self.node_name)
                body = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod.name,
                        "namespace": pod.namespace,
                        "labels": md.get("labels") or {},
                        "annotations": ann,
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.node_name,
                                "uid": self.node_uid,
                                "controller": True,
                            }
                        ],
                    },
                    "spec": spec,
                }
                try:
                    mirror = self.client.create(body)
                except ApiError as e2:
                    log.warn(f"mirror pod {pod.namespace}/{pod.name}: {e2}")
                    continue
            annotations = mirror["metadata"].get("annotations") or {}
            if (
                mirror["metadata"].get("deletionTimestamp")
                or annotations.get("kubernetes.io/config.mirror") != pod.hash
            ):
                # Outdated: created for an earlier manifest whose delete failed (the local API
                # server was the pod being replaced). Upstream's kubelet deletes a mirror pod
                # that is not IsMirrorPodOf the static pod, and creates it anew.
                self.client.delete("Pod", pod.name, pod.namespace, {"gracePeriodSeconds": 0})
                continue
            old = mirror.get("status") or {}
            comparable = lambda s: {k: v for k, v in s.items() if k != "conditions"}  # noqa: E731
            old_ready = [
                c.get("status") for c in old.get("conditions") or [] if c["type"] == "Ready"
            ]
            if comparable(old) == comparable(
                dict(status, startTime=old.get("startTime"))
            ) and old_ready == [("True" if ready else "False")]:
                continue
            status["startTime"] = old.get("startTime") or nodestatus.now()
            mirror["status"] = status
            try:
                self.client.update(mirror, sub="status")
            except ApiError as e:
                if e.status not in (404, 409):
                    log.warn(f"mirror pod status {pod.name}: {e}")

    # --- loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sync_static()
                if self.ensure_client():
                    if not self.registered:
                        self.register()
                    if self._status_due():
                        self.last_status = time.monotonic()
                        self.post_status()
                    self.sync_mirrors()
                    self.runner.sync(nodestatus.runtime_up(self.runtime), self.pod_cidr)
            except (ApiError, OSError) as e:
                log.warn(f"sync: {e}")
            self.stopping.wait(1.0)
        for pod in self.static.values():
            pod.stop(grace=10)


def main(argv: list[str] | None = None) -> int:
    flags = parse_args(sys.argv[1:] if argv is None else argv)
    config_path = flags.get("config", KUBELET_CONFIG)
    try:
        with open(host(config_path)) as f:
            config = yaml.safe_load(f) or {}
    except OSError as e:
        log.error(
            f'"command failed" err="failed to load kubelet config file, path: '
            f"{config_path}, error: failed to load Kubelet config file {config_path}, "
            f'error failed to read kubelet config file \\"{config_path}\\", error: open '
            f'{config_path}: {e.strerror.lower() if e.strerror else e}"'
        )
        return 1
    kubelet = Kubelet(flags, config)
    port = int(config.get("healthzPort", 10248))
    if TEST_MODE and os.environ.get("K8SBOOT_STANDIN_KUBELET_HEALTHZ_PORT"):
        port = int(os.environ["K8SBOOT_STANDIN_KUBELET_HEALTHZ_PORT"])
    if port:
        srv = ThreadingHTTPServer((config.get("healthzBindAddress", "127.0.0.1"), port), Healthz)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    log.info(
        f'kubelet stand-in starting: node "{kubelet.node_name}", node IP {kubelet.node_ip}, '
        f"static pods from {kubelet.manifest_dir}"
    )

    def stop(*_):
        kubelet.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kubelet.run()
    return 0
