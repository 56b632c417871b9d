"""`kubeadm upgrade plan [version]` (cmd/kubeadm/app/cmd/upgrade/plan.go): the versions each
node runs, what an upgrade to the target would change, as the UpgradePlan of
output.kubeadm.k8s.io/v1alpha3 (`-o json|yaml`) or kubeadm's tables."""

from __future__ import annotations

import json

import yaml

from .. import versions
from ..client import Client
from . import preflight
from .common import admin_client, klog_warn, log
from .errors import KubeadmError
from .upgrade import NO_CONFIG, fetch_cluster, health_checks, minor, prerelease, semver


def image_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.partition(":")[2].replace("_", "+")


def component_versions(client: Client, component: str) -> dict[str, list[str]]:
    """versiongetter.go ComponentVersions: the image tag of each node's static Pod."""
    out: dict[str, list[str]] = {}
    for pod in client.list("Pod", "kube-system", f"component={component},tier=control-plane"):
        tag = image_tag(pod["spec"]["containers"][0]["image"])
        out.setdefault(tag, []).append(pod["spec"].get("nodeName", ""))
    return out


def kubelet_versions(client: Client) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in client.list("Node"):
        out.setdefault(n["status"]["nodeInfo"]["kubeletVersion"], []).append(n["metadata"]["name"])
    return out


def deployed_dns(client: Client) -> str:
    for d in client.list("Deployment", "kube-system", "k8s-app=kube-dns"):
        return image_tag(d["spec"]["template"]["spec"]["containers"][0]["image"])
    return ""


def config_states(client: Client) -> list[dict]:
    """componentconfigs.GetVersionStates: the component config versions in the cluster."""
    states = []
    for group, cm, key, preferred in (
        ("kubeproxy.config.k8s.io", "kube-proxy", "config.conf", "v1alpha1"),
        ("kubelet.config.k8s.io", "kubelet-config", "kubelet", "v1beta1"),
    ):
        found = client.get_or_none("ConfigMap", cm, "kube-system") or {}
        doc = yaml.safe_load((found.get("data") or {}).get(key) or "{}") or {}
        states.append(
            {
                "group": group,
                "currentVersion": str(doc.get("apiVersion", "")).rpartition("/")[2],
                "preferredVersion": preferred,
                "manualUpgradeRequired": False,
            }
        )
    return states


def available_upgrades(client: Client, target: str | None, say) -> list[dict]:
    """phases/upgrade/compute.go GetAvailableUpgrades with upgrade plan's OfflineVersionGetter:
    a [version] argument answers every "stable"/"stable-1.N" lookup, without it kubeadm asks
    dl.k8s.io (no internet here: it falls back to its own version, as upstream offline)."""
    say("[upgrade] Fetching available versions to upgrade to")
    apiservers = component_versions(client, "kube-apiserver")
    if len(apiservers) > 1:
        found = ", ".join(f"{v} on nodes [{' '.join(n)}]" for v, n in apiservers.items())
        klog_warn(
            f"Different API server versions in the cluster were discovered: {found}. Please "
            "upgrade your control plane nodes to the same version of Kubernetes"
        )
    cluster = max(apiservers, key=semver).lstrip("v")
    kubeadm = versions.kubernetes_version()
    say(f"[upgrade/versions] Cluster version: {cluster}")
    say(f"[upgrade/versions] kubeadm version: {kubeadm}")

    def ci_label(label: str, description: str) -> str | None:
        try:
            if not target:
                raise KubeadmError(
                    f'unable to get URL "https://dl.k8s.io/release/{label}.txt": no internet '
                    "access in the k8sboot lab"
                )
            semver(target)
            return target
        except KubeadmError as e:
            klog_warn(f"[upgrade/versions] WARNING: Couldn't fetch latest {description}: {e}")
            return None

    stable = ci_label("stable", "stable version")
    if stable is None:
        klog_warn(
            "[upgrade/versions] WARNING: Falling back to current kubeadm version as latest "
            "stable version"
        )
        stable = kubeadm
    else:
        say(f"[upgrade/versions] Target version: {stable}")
    kubelets = kubelet_versions(client)
    controller_managers = component_versions(client, "kube-controller-manager")
    schedulers = component_versions(client, "kube-scheduler")
    etcds = component_versions(client, "etcd")
    dns = deployed_dns(client)
    found: list[tuple[str, str, str]] = []
    can_minor = semver(cluster) < semver(stable)
    if semver(stable) >= semver(cluster):
        branch = ".".join(cluster.split(".")[:2])
        description = f"version in the v{branch} series"
        patch = ci_label(f"stable-{branch}", description)
        if patch is not None:
            say(f"[upgrade/versions] Latest {description}: {patch}")
            can_minor = semver(patch) < semver(stable)
            if semver(cluster) < semver(patch):
                newer = kubeadm if semver(kubeadm) >= semver(patch) else patch
                found.append((description, patch, newer))
    if can_minor:
        found.append(("stable version", stable, stable))
    say("")

    def plan(description: str, after: str, new_kubeadm: str) -> dict:
        def row(name: str, current: str, new: str, node_name: str = "") -> dict:
            r = {"name": name, "currentVersion": current, "newVersion": new}
            return {**r, "nodeName": node_name} if node_name else r

        rows = []
        if len(kubelets) > 1 or (kubelets and after not in kubelets):
            rows += [row("kubelet", v, after, n) for v in sorted(kubelets) for n in kubelets[v]]
        for name, found_versions in (
            ("kube-apiserver", apiservers),
            ("kube-controller-manager", controller_managers),
            ("kube-scheduler", schedulers),
        ):
            rows += [
                row(name, v, after, n) for v in sorted(found_versions) for n in found_versions[v]
            ]
        rows.append(row("kube-proxy", cluster, after))
        rows.append(row("CoreDNS", dns, versions.COREDNS_TAG[minor(kubeadm)]))
        rows.append(row("kubeadm", kubeadm, new_kubeadm))
        etcd_after = versions.etcd_tag(after) if etcds else ""
        rows += [row("etcd", v, etcd_after, n) for v in sorted(etcds) for n in etcds[v]]
        return {"description": description, "components": rows}

    return [plan(*f) for f in found]


def table(rows: list[list[str]]) -> None:
    """Go's tabwriter as kubeadm sets it up (minwidth 10, padding 3, spaces)."""
    widths = [max(10, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1])


SEPARATOR = "_" * 69


def print_plan(plan: dict) -> None:
    """upgradePlanTextPrinter.PrintObj."""
    header = ["COMPONENT", "NODE", "CURRENT", "TARGET"]
    for up in plan.get("availableUpgrades", []):
        comps = up["components"]
        version = next(c["newVersion"] for c in comps if c["name"] == "kube-apiserver")
        kubeadm = next(c for c in comps if c["name"] == "kubeadm")
        pre = prerelease(version)
        flag = (
            ""
            if not pre
            else " --allow-release-candidate-upgrades"
            if pre.startswith("rc")
            else " --allow-experimental-upgrades"
        )

        def cells(c: dict) -> list[str]:
            return [c["name"], c.get("nodeName", ""), c["currentVersion"], c["newVersion"]]

        print(
            "Components that must be upgraded manually after you have upgraded the control "
            "plane with 'kubeadm upgrade apply':"
        )
        table([header] + [cells(c) for c in comps if c["name"] == "kubelet"])
        print()
        print(f"Upgrade to the latest {up['description']}:")
        print()
        table([header] + [cells(c) for c in comps if c["name"] not in ("kubelet", "kubeadm")])
        print()
        print("You can now apply the upgrade by executing the following command:")
        print()
        print(f"\tkubeadm upgrade apply {version}{flag}")
        print()
        if kubeadm["currentVersion"] != kubeadm["newVersion"]:
            print(
                "Note: Before you can perform this upgrade, you have to update kubeadm to "
                f"{kubeadm['newVersion']}."
            )
            print()
        print(SEPARATOR)
        print()
    print()
    print(
        "The table below shows the current state of component configs as understood by this "
        'version of kubeadm.\nConfigs that have a "yes" mark in the "MANUAL UPGRADE REQUIRED" '
        "column require manual config upgrade or\nresetting to kubeadm defaults before a "
        "successful upgrade can be performed. The version to manually\nupgrade to is denoted "
        'in the "PREFERRED VERSION" column.'
    )
    print()
    table(
        [["API GROUP", "CURRENT VERSION", "PREFERRED VERSION", "MANUAL UPGRADE REQUIRED"]]
        + [
            [
                s["group"],
                s["currentVersion"] or "-",
                s["preferredVersion"] or "-",
                "yes" if s["manualUpgradeRequired"] else "no",
            ]
            for s in plan["configVersions"]
        ]
    )
    print(SEPARATOR)
    print()


def plan(a) -> int:
    if a.output not in ("text", "json", "yaml"):
        raise KubeadmError(
            "could not construct output printer: unable to match a printer suitable for the "
            f'output format "{a.output}", allowed formats are: json,text,yaml'
        )
    if a.config:
        raise KubeadmError(NO_CONFIG)
    # Structured output silences the progress lines (output.ResourcePrinterWrapper).
    say = log if a.output == "text" else (lambda *_: None)
    client = admin_client(a.kubeconfig)
    fetch_cluster(client, "upgrade/config", say)
    say("[preflight] Running pre-flight checks.")
    preflight.run([preflight.is_root()], a.ignore_preflight_errors, say)
    health_checks(client, a.ignore_preflight_errors, say)
    upgrades = available_upgrades(client, a.version, say)
    if not upgrades:
        return 0  # "Awesome, you're up-to-date! Enjoy!" goes to klog at -v=1 only
    doc = {
        "kind": "UpgradePlan",
        "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
        "availableUpgrades": upgrades,
        "configVersions": config_states(client),
    }
    if a.output == "json":
        print(json.dumps(doc, indent=4))
    elif a.output == "yaml":
        print(yaml.safe_dump(doc, sort_keys=True), end="")
    else:
        print_plan(doc)
    return 0
