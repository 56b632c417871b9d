"""Static Pods as child processes: the image names which program runs, the manifest's
command line is passed through (file paths are kubeadm's)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

from ..paths import TEST_MODE, host, rehost_arg
from . import log

LIB_DIR = str(Path(__file__).resolve().parents[2])
STANDIN_MODULES = {
    "kube-apiserver": "standins.apiserver",
    "kube-controller-manager": "standins.controller_manager",
    "kube-scheduler": "standins.scheduler",
    "kube-vip": "standins.kube_vip",
}
# Images whose tag is the Kubernetes version the stand-in should claim to be.
VERSIONED = {"kube-apiserver", "kube-controller-manager", "kube-scheduler"}


def image_name(image: str) -> tuple[str, str]:
    base = image.rsplit("/", 1)[-1]
    name, _, tag = base.partition(":")
    return name, tag


def command_for(container: dict) -> list[str] | None:
    """The host command a container of this image maps to, or None if the lab cannot run it."""
    name, _ = image_name(container.get("image", ""))
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if not argv:
        return None
    if name == "etcd":
        binary = os.environ.get("K8SBOOT_STANDIN_ETCD", "etcd")
        return [binary, *[rehost_arg(a) for a in argv[1:]]]
    if name in STANDIN_MODULES:
        # command[0] names the binary (kubeadm's manifests); with args alone (kube-vip's
        # `args: [manager]`) the image's entrypoint is the binary and every arg is passed.
        rest = argv[1:] if container.get("command") else argv
        return [sys.executable, "-m", STANDIN_MODULES[name], *rest]
    return None


class Container:
    """One process of a static pod, restarted with back-off when it exits."""

    def __init__(self, pod_key: str, spec: dict, log_dir: str, pod_spec: dict | None = None):
        self.pod_key = pod_key
        self.spec = spec
        self.pod_spec = pod_spec or {}
        self.name = spec["name"]
        self.argv = command_for(spec)
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.started_at: str | None = None
        self.next_start = 0.0
        self.backoff = 1.0
        self.last_exit: int | None = None
        self.ready = False
        self.log_path = os.path.join(log_dir, self.name, "0.log")
        self._probe_at = 0.0

    def _env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = LIB_DIR + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        image, tag = image_name(self.spec.get("image", ""))
        if image in VERSIONED and tag.startswith("v"):
            env["K8SBOOT_STANDIN_VERSION"] = tag
        for e in self.spec.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
        # A process sees the host's files and /etc/hosts, not the container's: tell the
        # stand-ins where the pod's hostPath mounts and host aliases point (see
        # tests/lab/standins/README.md).
        env["K8SBOOT_STANDIN_MOUNTS"] = json.dumps(host_mounts(self.spec, self.pod_spec))
        env["K8SBOOT_STANDIN_HOST_ALIASES"] = json.dumps(self.pod_spec.get("hostAliases") or [])
        if image_name(self.spec.get("image", ""))[0] == "etcd":
            env.setdefault("ETCD_UNSUPPORTED_ARCH", "")
        return env

    def sync(self) -> None:
        if self.argv is None:
            return
        if self.proc is not None and self.proc.poll() is not None:
            self.last_exit = self.proc.returncode
            log.warn(
                f"container {self.name} of {self.pod_key} exited with {self.last_exit}; "
                f"restarting in {self.backoff:.0f}s"
            )
            self.proc = None
            self.ready = False
            self.restarts += 1
            self.next_start = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, 30.0)
        if self.proc is None and time.monotonic() >= self.next_start:
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            log.info(
                f"starting container {self.name} of {self.pod_key}: {' '.join(self.argv[:3])} ..."
            )
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
            out.close()
            self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.proc is not None and time.monotonic() - self._probe_at > 1.0:
            self._probe_at = time.monotonic()
            self.ready = self._probe()
            if self.ready:
                self.backoff = 1.0

    def _probe(self) -> bool:
        probe = (
            self.spec.get("readinessProbe")
            or self.spec.get("startupProbe")
            or self.spec.get("livenessProbe")
        )
        if not probe or "httpGet" not in probe:
            return self.proc is not None
        g = probe["httpGet"]
        path = g.get("path", "/")
        code = _http_get(
            g.get("host") or "127.0.0.1", int(g["port"]), path, g.get("scheme", "HTTP")
        )
        if code == 404 and image_name(self.spec.get("image", ""))[0] == "etcd":
            # etcd 3.4 (Debian) has /health but not /livez or /readyz (etcd >= 3.5.11).
            code = _http_get(
                g.get("host") or "127.0.0.1", int(g["port"]), "/health", g.get("scheme", "HTTP")
            )
        return code is not None and 200 <= code < 400

    def stop(self, grace: float = 30.0) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        self.ready = False

    def status(self) -> dict:
        st: dict = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "restartCount": self.restarts,
            "ready": self.ready,
            "started": self.proc is not None,
        }
        if self.argv is None:
            st["state"] = {
                "waiting": {
                    "reason": "ImageNotRunnableInLab",
                    "message": "the k8sboot lab has no stand-in for this image",
                }
            }
        elif self.proc is not None:
            st["state"] = {"running": {"startedAt": self.started_at}}
            st["containerID"] = f"standin://{self.proc.pid}"
        else:
            st["state"] = {
                "waiting": {"reason": "CrashLoopBackOff" if self.restarts else "ContainerCreating"}
            }
        if self.last_exit is not None:
            st["lastState"] = {"terminated": {"exitCode": self.last_exit, "reason": "Error"}}
        return st


def host_mounts(container: dict, pod_spec: dict) -> dict[str, str]:
    """mountPath -> host path for the container's hostPath volume mounts (with subPath)."""
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    out = {}
    for m in container.get("volumeMounts") or []:
        vol = volumes.get(m.get("name")) or {}
        if "hostPath" not in vol or not m.get("mountPath"):
            continue
        path = vol["hostPath"].get("path", "")
        if m.get("subPath"):
            path = os.path.join(path, m["subPath"])
        out[m["mountPath"]] = path
    return out


def _http_get(host_: str, port: int, path: str, scheme: str) -> int | None:
    try:
        if scheme.upper() == "HTTPS":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c = http.client.HTTPSConnection(host_, port, timeout=3, context=ctx)
        else:
            c = http.client.HTTPConnection(host_, port, timeout=3)
        c.request("GET", path)
        code = c.getresponse().status
        c.close()
        return code
    except (OSError, http.client.HTTPException):
        return None


class StaticPod:
    def __init__(self, path: str, manifest: dict, raw: bytes, node_name: str):
        self.path = path
        self.manifest = manifest
        self.hash = hashlib.md5(raw).hexdigest()
        md = manifest.get("metadata") or {}
        self.namespace = md.get("namespace") or "default"
        self.name = f"{md.get('name')}-{node_name}"
        self.uid = self.hash
        self.seen = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        log_dir = host(f"/var/log/pods/{self.namespace}_{self.name}_{self.uid}")
        self.containers = [
            Container(f"{self.namespace}/{self.name}", c, log_dir, manifest.get("spec") or {})
            for c in (manifest.get("spec") or {}).get("containers") or []
        ]

    def sync(self) -> None:
        for c in self.containers:
            c.sync()

    def stop(self) -> None:
        grace = float((self.manifest.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        for c in self.containers:
            c.stop(grace)


def read_manifests(directory: str) -> dict[str, tuple[dict, bytes]]:
    import yaml

    out = {}
    real = host(directory)
    if not os.path.isdir(real):
        return out
    for entry in sorted(os.scandir(real), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if not entry.name.endswith((".yaml", ".yml", ".json", ".manifest")):
            continue
        try:
            raw = Path(entry.path).read_bytes()
            doc = json.loads(raw) if entry.name.endswith(".json") else yaml.safe_load(raw)
        except (OSError, ValueError, yaml.YAMLError) as e:
            log.warn(f"could not read static pod manifest {entry.path}: {e}")
            continue
        if isinstance(doc, dict) and doc.get("kind") == "Pod":
            out[entry.path] = (doc, raw)
    return out


__all__ = ["TEST_MODE", "StaticPod", "read_manifests"]
