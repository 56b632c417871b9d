"""Defaulting at create time, for the fields kubectl and the stand-ins read back."""

from __future__ import annotations

import copy

DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


def pod_spec(spec: dict, is_template: bool = False) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        image = c.get("image", "")
        c.setdefault(
            "imagePullPolicy",
            "Always"
            if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]
            else "IfNotPresent",
        )
        c.setdefault("resources", {})
    if not is_template:
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        tol = spec.setdefault("tolerations", [])
        for t in DEFAULT_TOLERATIONS:
            if not any(x.get("key") == t["key"] and x.get("effect") == "NoExecute" for x in tol):
                tol.append(copy.deepcopy(t))


def qos_class(spec: dict) -> str:
    res = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    if all(r.get("limits") and r.get("requests", r["limits"]) == r["limits"] for r in res):
        return "Guaranteed"
    return "Burstable"


def on_create(kind: str, obj: dict) -> None:
    spec = obj.setdefault("spec", {}) if kind in WITH_SPEC else None
    if kind == "Pod":
        pod_spec(spec)
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    elif kind == "Namespace":
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]
    elif kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"):
        if kind != "DaemonSet":
            spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
            )
        if kind == "DaemonSet":
            spec.setdefault(
                "updateStrategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            )
        tmpl = spec.setdefault("template", {})
        pod_spec(tmpl.setdefault("spec", {}), is_template=True)
        obj["status"] = {}
    elif kind == "PodDisruptionBudget":
        obj["status"] = {
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "disruptionsAllowed": 0,
            "expectedPods": 0,
            "observedGeneration": 0,
        }
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        obj["status"] = {"loadBalancer": {}}
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif kind == "CertificateSigningRequest":
        obj["status"] = {}


WITH_SPEC = {
    "Pod",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "Service",
    "PodDisruptionBudget",
    "Node",
    "Lease",
    "CertificateSigningRequest",
}
