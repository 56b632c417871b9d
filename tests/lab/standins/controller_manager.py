"""kube-controller-manager stand-in. Reconciles every second while it holds the
kube-system/kube-controller-manager Lease:

csrapproving + csrsigning (kubelet client certificates), tokencleaner, bootstrapsigner,
garbagecollector (background deletion of dependents), nodeipam (podCIDR), nodelifecycle
(Ready=Unknown after the grace period, not-ready/unreachable/unschedulable taints),
disruption (PodDisruptionBudget status), replicaset, deployment, daemonset, podgc (pods of
deleted nodes), serviceaccount (default), root-ca-cert-publisher (kube-root-ca.crt).
StatefulSets, Jobs, endpoints and everything else are stored by the API server but not
reconciled (see tests/lab/README.md).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import random
import sys
import time

from cryptography import x509
from cryptography.x509.oid import NameOID

from . import pki, versions
from .apiserver.policy import (
    DELETION_TIMEOUT,
    compute_status,
    disruption_allowed_condition,
    matching_pods,
    pod_ready,
)
from .client import ApiError, Client, NotFound
from .component import LeaderElector, log, node_fits, parse_flags, parse_time, serve_health
from .kubeadm.discovery import detached_jws
from .paths import host

NAME = "kube-controller-manager"
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DS_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def _read(path: str) -> bytes:
    with open(host(path), "rb") as f:
        return f.read()


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suffix(n: int = 5) -> str:
    return "".join(random.choice(ALPHABET) for _ in range(n))


def owned_by(obj: dict, owner: dict) -> bool:
    return any(
        r.get("uid") == owner["metadata"]["uid"] and r.get("controller")
        for r in obj["metadata"].get("ownerReferences") or []
    )


def owner_ref(owner: dict) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    out = ""
    while len(out) < 10:
        out += ALPHABET[n % len(ALPHABET)]
        n //= len(ALPHABET)
    return out


class ControllerManager:
    def __init__(self, client: Client, flags: dict[str, str]):
        self.c = client
        self.flags = flags
        self.signing = None
        cert_file, key_file = (
            flags.get("cluster-signing-cert-file"),
            flags.get("cluster-signing-key-file"),
        )
        if cert_file and key_file:
            self.signing = (
                pki.load_cert(_read(cert_file)),
                pki.load_key(_read(key_file)),
            )
        self.root_ca = None
        if flags.get("root-ca-file"):
            self.root_ca = _read(flags["root-ca-file"]).decode()
        self.cluster_cidr = (
            flags.get("cluster-cidr") if flags.get("allocate-node-cidrs") == "true" else None
        )
        self.grace = 50 if versions.minor() >= 32 else 40
        # Node name -> (latest Lease renewTime seen, Ready heartbeat seen, probe time).
        self.health: dict[str, tuple[dt.datetime | None, str | None, float]] = {}
        self.controllers = [
            self.csr,
            self.tokencleaner,
            self.bootstrapsigner,
            self.nodeipam,
            self.nodelifecycle,
            self.serviceaccounts,
            self.deployments,
            self.replicasets,
            self.daemonsets,
            self.disruption,
            self.podgc,
            self.garbagecollector,
        ]

    def reconcile(self) -> None:
        self.cache: dict = {}
        for ctl in self.controllers:
            try:
                ctl()
            except (ApiError, OSError, ValueError, KeyError) as e:
                log(NAME, f"controller {ctl.__name__}: {e}")

    def list(self, kind: str, ns: str | None = None) -> list[dict]:
        key = (kind, ns)
        if key not in self.cache:
            self.cache[key] = self.c.list(kind, ns)
        return self.cache[key]

    # --- certificates ------------------------------------------------------------------------
    def csr(self) -> None:
        for csr in self.list("CertificateSigningRequest"):
            spec, st = csr.get("spec", {}), csr.get("status", {})
            conds = {c["type"] for c in st.get("conditions") or []}
            signer = spec.get("signerName")
            if not conds and signer == "kubernetes.io/kube-apiserver-client-kubelet":
                self._maybe_approve(csr)
            elif "Approved" in conds and not st.get("certificate") and "Failed" not in conds:
                self._sign(csr)

    def _allowed(self, spec: dict, sub: str) -> bool:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": spec.get("username"),
                "groups": spec.get("groups") or [],
                "uid": spec.get("uid", ""),
                "resourceAttributes": {
                    "group": "certificates.k8s.io",
                    "resource": "certificatesigningrequests",
                    "verb": "create",
                    "subresource": sub,
                },
            },
        }
        out = self.c.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        return bool(out.get("status", {}).get("allowed"))

    def _maybe_approve(self, csr: dict) -> None:
        spec = csr["spec"]
        try:
            req = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        except (ValueError, KeyError):
            return
        cn = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = [o.value for o in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        cn = cn[0].value if cn else ""
        if orgs != ["system:nodes"] or not cn.startswith("system:node:"):
            return
        sub = "selfnodeclient" if spec.get("username") == cn else "nodeclient"
        if not self._allowed(spec, sub):
            return
        csr.setdefault("status", {})["conditions"] = [
            {
                "type": "Approved",
                "status": "True",
                "reason": "AutoApproved",
                "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                "lastUpdateTime": now(),
                "lastTransitionTime": now(),
            }
        ]
        self.c.update(csr, sub="approval")
        log(NAME, f"approved CSR {csr['metadata']['name']} for {cn}")

    def _sign(self, csr: dict) -> None:
        if self.signing is None:
            return
        spec = csr["spec"]
        req = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        cn = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = tuple(o.value for o in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        usages = spec.get("usages") or []
        duration = dt.timedelta(days=365)
        if spec.get("expirationSeconds"):
            duration = min(duration, dt.timedelta(seconds=int(spec["expirationSeconds"])))
        cert, _ = pki.sign(
            pki.CertSpec(
                cn[0].value if cn else "",
                orgs,
                server="server auth" in usages,
                client="client auth" in usages,
            ),
            *self.signing,
            public_key=req.public_key(),
            validity=duration,
        )
        csr["status"]["certificate"] = base64.b64encode(pki.cert_pem(cert)).decode()
        self.c.update(csr, sub="status")

    # --- bootstrap tokens --------------------------------------------------------------------
    def _tokens(self) -> list[tuple[dict, dict]]:
        out = []
        for s in self.list("Secret", "kube-system"):
            if s.get("type") == "bootstrap.kubernetes.io/token":
                d = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
                out.append((s, d))
        return out

    @staticmethod
    def _expired(d: dict) -> bool:
        exp = parse_time(d.get("expiration"))
        return exp is not None and exp <= dt.datetime.now(dt.UTC)

    def tokencleaner(self) -> None:
        for s, d in self._tokens():
            if self._expired(d):
                try:
                    self.c.delete("Secret", s["metadata"]["name"], "kube-system")
                    log(NAME, f"deleted expired bootstrap token {s['metadata']['name']}")
                except NotFound:
                    pass

    def bootstrapsigner(self) -> None:
        try:
            cm = self.c.get("ConfigMap", "cluster-info", "kube-public")
        except NotFound:
            return
        data = dict(cm.get("data") or {})
        content = data.get("kubeconfig")
        if content is None:
            return
        want = {}
        for _, d in self._tokens():
            if d.get("usage-bootstrap-signing") == "true" and not self._expired(d):
                want[f"jws-kubeconfig-{d['token-id']}"] = detached_jws(
                    content, d["token-id"], d["token-secret"]
                )
        new = {k: v for k, v in data.items() if not k.startswith("jws-kubeconfig-")}
        new.update(want)
        if new != data:
            cm["data"] = new
            self.c.update(cm)

    # --- nodes ---------------------------------------------------------------------------------
    def nodeipam(self) -> None:
        if not self.cluster_cidr:
            return
        net = ipaddress.ip_network(self.cluster_cidr.split(",")[0], strict=False)
        size = int(self.flags.get("node-cidr-mask-size", "24"))
        nodes = self.list("Node")
        used = {n["spec"].get("podCIDR") for n in nodes}
        for node in nodes:
            if node["spec"].get("podCIDR"):
                continue
            for sub in net.subnets(new_prefix=size):
                if str(sub) not in used:
                    node["spec"]["podCIDR"] = str(sub)
                    node["spec"]["podCIDRs"] = [str(sub)]
                    used.add(str(sub))
                    self.c.update(node)
                    log(NAME, f'set podCIDR {sub} on node "{node["metadata"]["name"]}"')
                    break

    def _probe(self, name: str, ready: dict | None, lease: dict | None) -> float:
        """When this controller last saw the node alive, on its own clock, as upstream's
        tryUpdateNodeHealth (pkg/controller/nodelifecycle/node_lifecycle_controller.go,
        v1.30-v1.33) keeps it: "now" when it first sees the node, when the Ready condition's
        heartbeat changes, and when the Lease is renewed to a later time than it last saw.
        The Lease's renewTime is never compared with the clock: after an etcd restore the
        restored Leases are old, and upstream gives each kubelet a whole grace period."""
        now_m = time.monotonic()
        heartbeat = (ready or {}).get("lastHeartbeatTime")
        renewed = parse_time((lease or {}).get("spec", {}).get("renewTime"))
        saved = self.health.get(name)
        if saved is None:
            self.health[name] = (renewed, heartbeat, now_m)
            return now_m
        saved_renewed, saved_heartbeat, probe = saved
        if heartbeat != saved_heartbeat:
            probe = now_m
        if renewed and (saved_renewed is None or saved_renewed < renewed):
            saved_renewed, probe = renewed, now_m
        self.health[name] = (saved_renewed, heartbeat, probe)
        return probe

    def nodelifecycle(self) -> None:
        leases = {
            lease["metadata"]["name"]: lease for lease in self.list("Lease", "kube-node-lease")
        }
        nodes = self.list("Node")
        for gone in set(self.health) - {n["metadata"]["name"] for n in nodes}:
            del self.health[gone]
        for node in nodes:
            name = node["metadata"]["name"]
            conds = node.get("status", {}).get("conditions") or []
            ready = next((c for c in conds if c["type"] == "Ready"), None)
            probe = self._probe(name, ready, leases.get(name))
            changed = False
            if time.monotonic() - probe > self.grace and ready and ready.get("status") != "Unknown":
                for c in conds:
                    c.update(
                        status="Unknown",
                        reason="NodeStatusUnknown",
                        message="Kubelet stopped posting node status.",
                        lastTransitionTime=now(),
                    )
                node["status"]["conditions"] = conds
                self.c.update(node, sub="status")
                node = self.c.get("Node", name)
                ready = next(
                    (c for c in node["status"]["conditions"] if c["type"] == "Ready"), None
                )
                log(NAME, f'node "{name}" stopped posting status; marked Ready=Unknown')
            status = (ready or {}).get("status")
            want = []
            if status == "False":
                want = [
                    ("node.kubernetes.io/not-ready", "NoSchedule"),
                    ("node.kubernetes.io/not-ready", "NoExecute"),
                ]
            elif status in ("Unknown", None):
                want = [
                    ("node.kubernetes.io/unreachable", "NoSchedule"),
                    ("node.kubernetes.io/unreachable", "NoExecute"),
                ]
            if node["spec"].get("unschedulable"):
                want.append(("node.kubernetes.io/unschedulable", "NoSchedule"))
            managed = {
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
                "node.kubernetes.io/unschedulable",
            }
            taints = node["spec"].get("taints") or []
            keep = [t for t in taints if t["key"] not in managed or (t["key"], t["effect"]) in want]
            have = {(t["key"], t["effect"]) for t in keep}
            for key, effect in want:
                if (key, effect) not in have:
                    t = {"key": key, "effect": effect}
                    if effect == "NoExecute":
                        t["timeAdded"] = now()
                    keep.append(t)
                    changed = True
            if len(keep) != len(taints):
                changed = True
            if changed:
                if keep:
                    node["spec"]["taints"] = keep
                else:
                    node["spec"].pop("taints", None)
                try:
                    self.c.update(node)
                except ApiError as e:
                    if e.status != 409:
                        raise

    def podgc(self) -> None:
        names = {n["metadata"]["name"] for n in self.list("Node")}
        for pod in self.list("Pod"):
            node = pod["spec"].get("nodeName")
            if node and node not in names:
                try:
                    self.c.delete(
                        "Pod",
                        pod["metadata"]["name"],
                        pod["metadata"]["namespace"],
                        {"gracePeriodSeconds": 0},
                    )
                    log(
                        NAME,
                        f"PodGC: deleted pod {pod['metadata']['namespace']}/"
                        f"{pod['metadata']['name']} of deleted node {node}",
                    )
                except NotFound:
                    pass

    # --- namespaces ----------------------------------------------------------------------------
    def serviceaccounts(self) -> None:
        sas = {
            (s["metadata"]["namespace"], s["metadata"]["name"]) for s in self.list("ServiceAccount")
        }
        cms = {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in self.list("ConfigMap")}
        for ns in self.list("Namespace"):
            name = ns["metadata"]["name"]
            if ns.get("status", {}).get("phase") == "Terminating":
                continue
            if (name, "default") not in sas:
                with contextlib.suppress(ApiError):
                    self.c.create(
                        {
                            "apiVersion": "v1",
                            "kind": "ServiceAccount",
                            "metadata": {"name": "default", "namespace": name},
                        }
                    )
            if self.root_ca and (name, "kube-root-ca.crt") not in cms:
                with contextlib.suppress(ApiError):
                    self.c.create(
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {
                                "name": "kube-root-ca.crt",
                                "namespace": name,
                                "annotations": {
                                    "kubernetes.io/description": "Contains a CA bundle that "
                                    "can be used to verify the kube-apiserver when using "
                                    "internal endpoints such as the internal service IP or "
                                    "kubernetes.default.svc. No other usage is guaranteed "
                                    "across distributions of Kubernetes clusters."
                                },
                            },
                            "data": {"ca.crt": self.root_ca},
                        }
                    )

    # --- workloads -----------------------------------------------------------------------------
    def _pod_from_template(
        self, owner: dict, template: dict, extra_labels: dict | None = None, name: str | None = None
    ) -> dict:
        md = dict(template.get("metadata") or {})
        labels = dict(md.get("labels") or {})
        labels.update(extra_labels or {})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "namespace": owner["metadata"]["namespace"],
                "labels": labels,
                "annotations": md.get("annotations") or {},
                "ownerReferences": [owner_ref(owner)],
            },
            "spec": json.loads(json.dumps(template.get("spec") or {})),
        }
        if name:
            pod["metadata"]["name"] = name
        else:
            pod["metadata"]["generateName"] = owner["metadata"]["name"] + "-"
        return pod

    def deployments(self) -> None:
        rss = self.list("ReplicaSet")
        for d in self.list("Deployment"):
            if d["metadata"].get("deletionTimestamp"):
                continue
            spec = d["spec"]
            h = template_hash(spec.get("template") or {})
            name = f"{d['metadata']['name']}-{h}"
            mine = [rs for rs in rss if owned_by(rs, d)]
            current = next((rs for rs in mine if rs["metadata"]["name"] == name), None)
            replicas = spec.get("replicas", 1)
            if current is None:
                tmpl = json.loads(json.dumps(spec.get("template") or {}))
                tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
                sel = json.loads(json.dumps(spec.get("selector") or {}))
                sel.setdefault("matchLabels", {})["pod-template-hash"] = h
                labels = dict(tmpl["metadata"]["labels"])
                current = self.c.create(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "metadata": {
                            "name": name,
                            "namespace": d["metadata"]["namespace"],
                            "labels": labels,
                            "ownerReferences": [owner_ref(d)],
                            "annotations": {
                                "deployment.kubernetes.io/desired-replicas": str(replicas),
                                "deployment.kubernetes.io/revision": str(len(mine) + 1),
                            },
                        },
                        "spec": {"replicas": replicas, "selector": sel, "template": tmpl},
                    }
                )
                log(
                    NAME,
                    f"deployment {d['metadata']['namespace']}/{d['metadata']['name']}: "
                    f'created replica set "{name}" with {replicas} replicas',
                )
            elif current["spec"].get("replicas") != replicas:
                current["spec"]["replicas"] = replicas
                self.c.update(current)
            for rs in mine:
                if rs["metadata"]["name"] != name and rs["spec"].get("replicas", 0) != 0:
                    rs["spec"]["replicas"] = 0
                    self.c.update(rs)
            st = current.get("status") or {}
            ready = st.get("readyReplicas", 0)
            new_status = {
                "observedGeneration": d["metadata"].get("generation", 1),
                "replicas": st.get("replicas", 0),
                "updatedReplicas": st.get("replicas", 0),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": max(0, replicas - ready),
            }
            if not ready:
                new_status.pop("readyReplicas")
            avail = ready >= replicas - 1 if replicas > 1 else ready >= replicas
            new_status["conditions"] = [
                {
                    "type": "Available",
                    "status": "True" if avail else "False",
                    "reason": "MinimumReplicasAvailable" if avail else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if avail
                    else "Deployment does not have minimum availability.",
                    "lastUpdateTime": now(),
                    "lastTransitionTime": now(),
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable"
                    if ready >= replicas
                    else "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{name}" has successfully progressed.',
                    "lastUpdateTime": now(),
                    "lastTransitionTime": now(),
                },
            ]
            self._set_status(d, new_status)

    def _set_status(self, obj: dict, status: dict) -> None:
        old = obj.get("status") or {}

        def strip(s: dict) -> dict:  # compare without timestamps
            out = dict(s)
            if "conditions" in out:
                out["conditions"] = [
                    {k: v for k, v in c.items() if not k.startswith("last")}
                    for c in out["conditions"]
                ]
            return out

        if strip(old) == strip(status):
            return
        obj["status"] = status
        try:
            self.c.update(obj, sub="status")
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    def replicasets(self) -> None:
        pods = self.list("Pod")
        for rs in self.list("ReplicaSet"):
            if rs["metadata"].get("deletionTimestamp"):
                continue
            mine = [
                p for p in pods if owned_by(p, rs) and not p["metadata"].get("deletionTimestamp")
            ]
            want = rs["spec"].get("replicas", 1)
            if len(mine) < want:
                for _ in range(want - len(mine)):
                    pod = self._pod_from_template(rs, rs["spec"].get("template") or {})
                    created = self.c.create(pod)
                    log(
                        NAME,
                        f"replicaset {rs['metadata']['namespace']}/{rs['metadata']['name']}: "
                        f"created pod {created['metadata']['name']}",
                    )
            elif len(mine) > want:
                # Upstream prefers unscheduled, then not-ready, then newer pods.
                mine.sort(
                    key=lambda p: (
                        bool(p["spec"].get("nodeName")),
                        pod_ready(p),
                        p["metadata"].get("creationTimestamp", ""),
                    ),
                    reverse=False,
                )
                for p in mine[: len(mine) - want]:
                    self.c.delete("Pod", p["metadata"]["name"], p["metadata"]["namespace"])
            ready = sum(1 for p in mine if pod_ready(p))
            status = {
                "replicas": min(len(mine), max(want, len(mine))),
                "fullyLabeledReplicas": len(mine),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            if not ready:
                status.pop("readyReplicas")
                status.pop("availableReplicas")
            self._set_status(rs, status)

    def daemonsets(self) -> None:
        nodes = self.list("Node")
        pods = self.list("Pod")
        for ds in self.list("DaemonSet"):
            if ds["metadata"].get("deletionTimestamp"):
                continue
            tmpl = ds["spec"].get("template") or {}
            spec = json.loads(json.dumps(tmpl.get("spec") or {}))
            tol = spec.setdefault("tolerations", [])
            for t in DS_TOLERATIONS:
                if t not in tol:
                    tol.append(dict(t))
            if spec.get("hostNetwork"):
                t = {
                    "key": "node.kubernetes.io/network-unavailable",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                }
                if t not in tol:
                    tol.append(t)
            mine = [
                p for p in pods if owned_by(p, ds) and not p["metadata"].get("deletionTimestamp")
            ]
            by_node: dict[str, list[dict]] = {}
            for p in mine:
                by_node.setdefault(p["spec"].get("nodeName", ""), []).append(p)
            desired = 0
            for node in nodes:
                nname = node["metadata"]["name"]
                fits = node_fits(spec, node) is None
                if fits:
                    desired += 1
                    if nname not in by_node:
                        pod_spec = json.loads(json.dumps(spec))
                        pod_spec["nodeName"] = nname
                        pod_spec["affinity"] = {
                            "nodeAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [
                                        {
                                            "matchFields": [
                                                {
                                                    "key": "metadata.name",
                                                    "operator": "In",
                                                    "values": [nname],
                                                }
                                            ]
                                        }
                                    ]
                                }
                            }
                        }
                        pod = self._pod_from_template(
                            ds,
                            {"metadata": tmpl.get("metadata"), "spec": pod_spec},
                            {
                                "controller-revision-hash": template_hash(tmpl),
                                "pod-template-generation": str(ds["metadata"].get("generation", 1)),
                            },
                        )
                        self.c.create(pod)
                elif nname in by_node and not node_fits_ignoring_noschedule(spec, node):
                    for p in by_node[nname]:
                        self.c.delete("Pod", p["metadata"]["name"], p["metadata"]["namespace"])
            names = {n["metadata"]["name"] for n in nodes}
            current = [p for p in mine if p["spec"].get("nodeName") in names]
            ready = sum(1 for p in current if pod_ready(p))
            self._set_status(
                ds,
                {
                    "currentNumberScheduled": len(current),
                    "desiredNumberScheduled": desired,
                    "numberMisscheduled": 0,
                    "numberReady": ready,
                    "numberAvailable": ready,
                    "numberUnavailable": max(0, desired - ready),
                    "updatedNumberScheduled": len(current),
                    "observedGeneration": ds["metadata"].get("generation", 1),
                },
            )

    def disruption(self) -> None:
        """Upstream's disruption controller (kubernetes pkg/controller/disruption/
        disruption.go): a pod the eviction API recorded in disruptedPods is not counted
        as healthy until it is seen deleted or DeletionTimeout passes; the status says
        which generation it was computed for, which eviction checks."""
        pods = self.list("Pod")
        at = dt.datetime.now(dt.UTC)
        for pdb in self.list("PodDisruptionBudget"):
            old = pdb.get("status") or {}
            st = compute_status(pdb, pods)
            mine = {p["metadata"]["name"]: p for p in matching_pods(pdb, pods)}
            disrupted = {}
            for name, when in (old.get("disruptedPods") or {}).items():
                pod = mine.get(name)
                since = parse_time(when)
                if pod is None or pod["metadata"].get("deletionTimestamp") or since is None:
                    continue
                if (at - since).total_seconds() < DELETION_TIMEOUT:
                    disrupted[name] = when
            st["currentHealthy"] -= sum(1 for n in disrupted if pod_ready(mine[n]))
            allowed = st["currentHealthy"] - st["desiredHealthy"]
            st["disruptionsAllowed"] = allowed if st["expectedPods"] > 0 and allowed > 0 else 0
            if disrupted:
                st["disruptedPods"] = disrupted
            st["conditions"] = disruption_allowed_condition(
                dict(st, conditions=old.get("conditions")), now()
            )
            self._set_status(pdb, st)

    # --- garbage collection --------------------------------------------------------------------
    def garbagecollector(self) -> None:
        kinds = [
            "Pod",
            "ReplicaSet",
            "ConfigMap",
            "Secret",
            "ControllerRevision",
            "Lease",
            "DaemonSet",
            "Deployment",
            "Service",
            "ServiceAccount",
            "PodDisruptionBudget",
        ]
        objects = {k: self.list(k) for k in [*kinds, "Node", "StatefulSet", "Namespace"]}
        uids = {o["metadata"]["uid"] for objs in objects.values() for o in objs}
        for kind in kinds:
            for obj in objects[kind]:
                refs = obj["metadata"].get("ownerReferences") or []
                if not refs or any(r.get("uid") in uids for r in refs):
                    continue
                if obj["metadata"].get("annotations", {}).get("kubernetes.io/config.mirror"):
                    continue  # mirror pods are the kubelet's to manage
                try:
                    self.c.delete(
                        kind,
                        obj["metadata"]["name"],
                        obj["metadata"].get("namespace"),
                        {"propagationPolicy": "Background"},
                    )
                    log(
                        NAME,
                        f"garbage collector: deleted {kind} {obj['metadata'].get('namespace')}/"
                        f"{obj['metadata']['name']}: its owner is gone",
                    )
                except NotFound:
                    pass


def node_fits_ignoring_noschedule(spec: dict, node: dict) -> bool:
    """A DaemonSet pod stays on a node unless a NoExecute taint or the selector rules it out."""
    relaxed = json.loads(json.dumps(node))
    relaxed["spec"]["taints"] = [
        t for t in node["spec"].get("taints") or [] if t.get("effect") == "NoExecute"
    ]
    return node_fits(spec, relaxed) is None


def main(argv: list[str] | None = None) -> int:
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    serve_health(flags.get("bind-address", "127.0.0.1"), int(flags.get("secure-port", "10257")))
    client = Client.from_kubeconfig(
        flags.get("kubeconfig", "/etc/kubernetes/controller-manager.conf")
    )
    log(NAME, f"stand-in {versions.kubernetes_version()} starting")
    cm = ControllerManager(client, flags)
    elector = LeaderElector(client, NAME) if flags.get("leader-elect", "true") == "true" else None
    interval = float(flags.get("standin-sync-period", "1"))
    while True:
        if elector is None or elector.is_leader():
            cm.reconcile()
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
