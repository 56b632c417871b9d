"""kube-scheduler stand-in: binds pending pods to a node that fits (taints and
tolerations, nodeSelector, required node affinity, not unschedulable), preferring the
node with the fewest pods. No resource accounting, no preemption, no spreading rules."""

from __future__ import annotations

import contextlib
import sys
import time

from . import versions
from .client import ApiError, Client
from .component import LeaderElector, log, node_fits, parse_flags, serve_health

NAME = "kube-scheduler"


def schedule_once(client: Client) -> None:
    # Pods first: a Node read afterwards is at least as new as the pods' creation, so a
    # replacement created after a cordon (a drain's evictions) never sees the node as
    # schedulable, as upstream's ordered watch events guarantee.
    pods = client.list("Pod")
    nodes = client.list("Node")
    load: dict[str, int] = {}
    for p in pods:
        if p["spec"].get("nodeName"):
            load[p["spec"]["nodeName"]] = load.get(p["spec"]["nodeName"], 0) + 1
    for pod in pods:
        spec, md = pod["spec"], pod["metadata"]
        if (
            spec.get("nodeName")
            or md.get("deletionTimestamp")
            or spec.get("schedulerName", "default-scheduler") != "default-scheduler"
        ):
            continue
        reasons: dict[str, int] = {}
        fits = []
        for node in nodes:
            why = node_fits(spec, node)
            if why is None:
                fits.append(node["metadata"]["name"])
            else:
                reasons[why] = reasons.get(why, 0) + 1
        if fits:
            target = min(fits, key=lambda n: (load.get(n, 0), n))
            try:
                client.request(
                    "POST",
                    f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/binding",
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": md["name"], "namespace": md["namespace"]},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": target},
                    },
                )
                load[target] = load.get(target, 0) + 1
                log(
                    NAME,
                    f'Successfully bound pod to node pod="{md["namespace"]}/{md["name"]}" '
                    f'node="{target}"',
                )
            except ApiError as e:
                log(NAME, f"binding {md['namespace']}/{md['name']}: {e}")
            continue
        msg = (
            f"0/{len(nodes)} nodes are available: "
            + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
            + "."
            if nodes
            else "no nodes available to schedule pods"
        )
        conds = [
            c
            for c in pod.get("status", {}).get("conditions") or []
            if c.get("type") != "PodScheduled"
        ]
        old = next(
            (
                c
                for c in pod.get("status", {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ),
            {},
        )
        if old.get("message") == msg:
            continue
        pod.setdefault("status", {})["conditions"] = [
            *conds,
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": msg,
                "lastProbeTime": None,
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        ]
        with contextlib.suppress(ApiError):
            client.update(pod, sub="status")


def main(argv: list[str] | None = None) -> int:
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    serve_health(flags.get("bind-address", "127.0.0.1"), int(flags.get("secure-port", "10259")))
    client = Client.from_kubeconfig(flags.get("kubeconfig", "/etc/kubernetes/scheduler.conf"))
    log(NAME, f"stand-in {versions.kubernetes_version()} starting")
    elector = LeaderElector(client, NAME) if flags.get("leader-elect", "true") == "true" else None
    while True:
        if elector is None or elector.is_leader():
            try:
                schedule_once(client)
            except (ApiError, OSError) as e:
                log(NAME, f"scheduling pass: {e}")
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
