"""Pods the scheduler (or their author) bound to this node. No image is pulled and no
container runs: a pod is reported Running and Ready once the node could start it (host
network, or a CNI configuration present), and init containers that copy a file from a
ConfigMap volume into a hostPath volume (how CNI plugins install their configuration) are
carried out for real. See tests/lab/README.md."""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil

from ..client import ApiError, Client
from ..paths import KUBELET_DIR, host
from . import log
from .nodestatus import cni_ready, now


def _volume_for(path: str, mounts: list[dict], volumes: dict) -> tuple[dict, str] | None:
    best = None
    for m in mounts:
        mp = m["mountPath"].rstrip("/") or "/"
        inside = path == mp or path.startswith(mp + "/")
        if inside and (best is None or len(mp) > len(best[1])):
            best = (m, mp)
    if best is None:
        return None
    m, mp = best
    vol = volumes.get(m["name"])
    if vol is None:
        return None
    return vol, path[len(mp) :].lstrip("/")


def run_copy_init_container(client: Client, pod: dict, container: dict) -> str:
    """Carry out `cp [-f] SRC DST` from a ConfigMap volume to a hostPath volume."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if len(argv) == 1 and " " in argv[0]:
        argv = shlex.split(argv[0])
    if not argv or os.path.basename(argv[0]) != "cp":
        return "skipped"
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if len(paths) != 2:
        return "skipped"
    src, dst = paths
    mounts = container.get("volumeMounts") or []
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    s, d = _volume_for(src, mounts, volumes), _volume_for(dst, mounts, volumes)
    if not s or not d or "configMap" not in s[0] or "hostPath" not in d[0]:
        return "skipped"
    cm_name = s[0]["configMap"]["name"]
    key = s[1]
    for item in s[0]["configMap"].get("items") or []:
        if item.get("path") == key:
            key = item["key"]
    cm = client.get("ConfigMap", cm_name, pod["metadata"]["namespace"])
    data = (cm.get("data") or {}).get(key)
    if data is None:
        raise RuntimeError(f"configmap {cm_name} has no key {key}")
    target = os.path.join(d[0]["hostPath"]["path"], d[1]) if d[1] else d[0]["hostPath"]["path"]
    real = host(target)
    if os.path.isdir(real):
        real = os.path.join(real, os.path.basename(src))
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with open(real + ".tmp", "w") as f:
        f.write(data)
    os.replace(real + ".tmp", real)
    log.info(
        f"init container {container['name']} of {pod['metadata']['namespace']}/"
        f"{pod['metadata']['name']}: copied configmap {cm_name}/{key} to {target}"
    )
    return "copied"


class PodRunner:
    def __init__(self, client: Client, node_name: str, node_ip: str):
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.started: dict[str, str] = {}  # uid -> pod IP
        self._next_ip = 2

    def _pod_ip(self, pod: dict, pod_cidr: str | None) -> str:
        if pod["spec"].get("hostNetwork") or not pod_cidr:
            return self.node_ip
        net = ipaddress.ip_network(pod_cidr, strict=False)
        used = set(self.started.values())
        while True:
            ip = str(net[self._next_ip % (net.num_addresses - 2) + 1])
            self._next_ip += 1
            if ip not in used:
                return ip

    def sync(self, runtime_ok: bool, pod_cidr: str | None) -> None:
        pods = self.client.list("Pod", field_selector=f"spec.nodeName={self.node_name}")
        seen = set()
        for pod in pods:
            md = pod["metadata"]
            if "kubernetes.io/config.mirror" in (md.get("annotations") or {}):
                continue
            seen.add(md["uid"])
            try:
                if md.get("deletionTimestamp"):
                    self._finish_deletion(pod)
                elif (
                    md["uid"] not in self.started or pod.get("status", {}).get("phase") == "Pending"
                ):
                    self._start(pod, runtime_ok, pod_cidr)
            except (ApiError, OSError, RuntimeError) as e:
                log.warn(f"pod {md.get('namespace')}/{md['name']}: {e}")
        for uid in set(self.started) - seen:
            self.started.pop(uid, None)
            shutil.rmtree(host(f"{KUBELET_DIR}/pods/{uid}"), ignore_errors=True)

    def _finish_deletion(self, pod: dict) -> None:
        md = pod["metadata"]
        self.started.pop(md["uid"], None)
        shutil.rmtree(host(f"{KUBELET_DIR}/pods/{md['uid']}"), ignore_errors=True)
        try:
            self.client.delete(
                "Pod",
                md["name"],
                md["namespace"],
                {"gracePeriodSeconds": 0, "preconditions": {"uid": md["uid"]}},
            )
        except ApiError as e:
            if e.status != 404 and e.status != 409:
                raise

    def _start(self, pod: dict, runtime_ok: bool, pod_cidr: str | None) -> None:
        md, spec = pod["metadata"], pod["spec"]
        status = pod.get("status") or {}
        can_network = spec.get("hostNetwork") or cni_ready()
        containers = spec.get("containers") or []
        if not runtime_ok or not can_network:
            waiting = [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
                for c in containers
            ]
            if status.get("containerStatuses") != waiting:
                self._put_status(
                    pod,
                    dict(
                        status,
                        phase="Pending",
                        hostIP=self.node_ip,
                        hostIPs=[{"ip": self.node_ip}],
                        containerStatuses=waiting,
                        conditions=self._conditions(status, False),
                    ),
                )
            return
        for vol in spec.get("volumes") or []:
            if "emptyDir" in vol:
                os.makedirs(
                    host(
                        f"{KUBELET_DIR}/pods/{md['uid']}/volumes/kubernetes.io~empty-dir/"
                        f"{vol['name']}"
                    ),
                    exist_ok=True,
                )
        init_statuses = []
        for ic in spec.get("initContainers") or []:
            outcome = run_copy_init_container(self.client, pod, ic)
            init_statuses.append(
                {
                    "name": ic["name"],
                    "image": ic.get("image", ""),
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "message": "k8sboot lab: "
                            + (
                                "copy performed by the kubelet stand-in"
                                if outcome == "copied"
                                else "not run (no container images in the lab)"
                            ),
                            "startedAt": now(),
                            "finishedAt": now(),
                        }
                    },
                }
            )
        ip = self.started.get(md["uid"]) or self._pod_ip(pod, pod_cidr)
        self.started[md["uid"]] = ip
        t = now()
        new = dict(
            status,
            phase="Running",
            hostIP=self.node_ip,
            hostIPs=[{"ip": self.node_ip}],
            podIP=ip,
            podIPs=[{"ip": ip}],
            startTime=status.get("startTime") or t,
            conditions=self._conditions(status, True),
            containerStatuses=[
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "containerID": f"standin://{md['uid'][:12]}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": t}},
                }
                for c in containers
            ],
        )
        if init_statuses:
            new["initContainerStatuses"] = init_statuses
        self._put_status(pod, new)

    @staticmethod
    def _conditions(status: dict, ready: bool) -> list[dict]:
        t = now()
        old = {c["type"]: c for c in status.get("conditions") or []}

        def c(typ, ok):
            s = "True" if ok else "False"
            prev = old.get(typ)
            return {
                "type": typ,
                "status": s,
                "lastProbeTime": None,
                "lastTransitionTime": prev["lastTransitionTime"]
                if prev and prev.get("status") == s
                else t,
            }

        return [
            c("PodReadyToStartContainers", ready),
            c("Initialized", ready),
            c("Ready", ready),
            c("ContainersReady", ready),
            c("PodScheduled", True),
        ]

    def _put_status(self, pod: dict, status: dict) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod["metadata"]["name"],
                "namespace": pod["metadata"]["namespace"],
                "uid": pod["metadata"]["uid"],
                "resourceVersion": pod["metadata"]["resourceVersion"],
            },
            "spec": pod["spec"],
            "status": status,
        }
        try:
            self.client.update(body, sub="status")
        except ApiError as e:
            if e.status not in (404, 409):
                raise
