"""The API server stand-in's eviction and the controller-manager stand-in's budget status,
against a real etcd (Debian's etcd-server, on free loopback ports) and, at the end, the
real kubectl drain.

Upstream sources:
- the eviction REST, kubernetes pkg/registry/core/pod/storage/eviction.go. The
  kubernetes/kubernetes snapshot was too large to fetch here, so this file was read from a
  stored copy whose tag could not be checked: it is the form with
  unhealthyPodEvictionPolicy (1.26+) and the PodDisruptionConditions gate still checked
  (before 1.33). Its rules below are the ones of every 1.30-1.33 release as far as the
  tag-checked sources next in this list show them.
- kubernetes/api kubernetes-1.33.0 policy/v1/types.go (the staging copy of
  k8s.io/api): selector, unhealthyPodEvictionPolicy and observedGeneration semantics.
- kubernetes/apimachinery kubernetes-1.33.0 pkg/api/errors/errors.go (NewTooManyRequests,
  NewForbidden), kubernetes/apiserver kubernetes-1.33.0
  pkg/endpoints/handlers/finisher/finisher.go (a failure Status returned by a REST
  create is an error: HTTP status = its code) and
  pkg/endpoints/handlers/responsewriters/writers.go (Retry-After from
  retryAfterSeconds), kubernetes/component-helpers kubernetes-1.33.0
  apps/poddisruptionbudget/helpers.go (UpdateDisruptionAllowedCondition).
- kubernetes/kubectl kubernetes-1.33.0 pkg/drain/drain.go (evictPods: 429 is retried
  every 5 s, anything else but 404 ends that pod's eviction with an error) and
  pkg/cmd/drain/drain.go (--force: "Continue even if there are pods that do not declare a
  controller").
- the disruption controller, kubernetes pkg/controller/disruption/disruption.go (stored
  copy, same caveat as eviction.go): countHealthyPods, buildDisruptedPodMap,
  updatePdbStatus, DeletionTimeout = 2 minutes.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.lab.standins.apiserver import errors
from tests.lab.standins.apiserver.registry import Registry
from tests.lab.standins.apiserver.resources import BY_GV_PLURAL, BY_KIND
from tests.lab.standins.apiserver.storage import Storage

from .conftest import REQUIRED
from .harness import api_server, kubectl_path

PODS = BY_KIND[("", "Pod")]
PDBS = BY_GV_PLURAL[("policy/v1", "poddisruptionbudgets")]
NAMESPACES = BY_KIND[("", "Namespace")]
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture
def reg(etcd) -> Registry:
    """A registry on the real etcd, and a namespace of the test's own."""
    registry = Registry(Storage(etcd))
    ns = f"eviction-{uuid.uuid4().hex[:8]}"
    registry.create(NAMESPACES, None, {"metadata": {"name": ns}})
    registry.ns = ns
    return registry


def make_pod(reg: Registry, name: str, phase="Running", ready=True, labels=None, **meta):
    pod = reg.create(
        PODS,
        reg.ns,
        {
            "metadata": {"name": name, "labels": labels or {"app": "web"}, **meta},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    status = {"phase": phase}
    if phase == "Running":
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return reg.update(PODS, reg.ns, name, dict(pod, status=status), sub="status")


def make_pdb(reg: Registry, name: str, selector=None, status=None, **spec) -> dict:
    """A budget whose stored status is `status`, as the disruption controller (or a test)
    wrote it; by default up to date with its generation."""
    pdb = reg.create(
        PDBS,
        reg.ns,
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "web"}} if selector is None else selector}
            | spec,
        },
    )
    if status is not None:
        stored = {"observedGeneration": 1, "expectedPods": 2} | status
        pdb = reg.update(PDBS, reg.ns, name, dict(pdb, status=stored), sub="status")
    return pdb


def gone(reg: Registry, name: str) -> bool:
    try:
        reg.get(PODS, reg.ns, name)
    except errors.StatusError as e:
        return e.code == 404
    return False


def budget(reg: Registry, name: str = "web") -> dict:
    return reg.get(PDBS, reg.ns, name)["status"]


def refusal(reg: Registry, pod: str, **kw) -> errors.StatusError:
    with pytest.raises(errors.StatusError) as caught:
        reg.evict(reg.ns, pod, {"metadata": {"name": pod}}, **kw)
    return caught.value


CLOSED = {"disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2}


@pytest.mark.parametrize(
    ("phase", "meta"),
    [
        ("Pending", {}),
        ("Succeeded", {}),
        ("Failed", {}),
        ("Running", {"finalizers": ["example.com/hold"]}),  # made terminating below
    ],
)
def test_pods_that_cannot_disrupt_anything_are_evicted_past_any_budget(reg, phase, meta):
    """eviction.go canIgnorePDB: Succeeded, Failed, Pending and terminating pods are
    deleted without looking at budgets, not even at how many there are."""
    make_pod(reg, "p", phase=phase, **meta)
    if meta:
        reg.delete(PODS, reg.ns, "p")  # a finalizer keeps it, terminating
        assert reg.get(PODS, reg.ns, "p")["metadata"]["deletionTimestamp"]
    make_pdb(reg, "web", status=CLOSED)
    make_pdb(reg, "all", selector={}, status=CLOSED)
    assert reg.evict(reg.ns, "p", {})["status"] == "Success"
    assert gone(reg, "p") or meta
    assert "disruptedPods" not in budget(reg) and budget(reg)["disruptionsAllowed"] == 0


def test_a_pod_under_two_budgets_is_refused_with_500(reg):
    """eviction.go: more than one budget selecting the pod answers a failure Status with
    code 500 and no reason, whatever the budgets allow."""
    make_pod(reg, "web-1")
    make_pdb(reg, "web", status={"disruptionsAllowed": 5, "currentHealthy": 9})
    make_pdb(reg, "all", selector={}, status={"disruptionsAllowed": 5, "currentHealthy": 9})
    e = refusal(reg, "web-1")
    assert e.code == 500
    assert e.message == (
        "This pod has more than one PodDisruptionBudget, which the eviction subresource "
        "does not support."
    )
    assert "reason" not in e.status() and e.status()["code"] == 500
    assert not gone(reg, "web-1")
    # A budget with an invalid selector selects nothing (getPodDisruptionBudgets).
    reg.delete(PDBS, reg.ns, "all")
    make_pdb(
        reg,
        "odd",
        selector={"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
        status={"disruptionsAllowed": 0},
    )
    assert reg.evict(reg.ns, "web-1", {})["status"] == "Success"


def store_status(reg, status: dict) -> None:
    """What the disruption controller writes into budget web's status."""
    reg.update(PDBS, reg.ns, "web", {"status": {"observedGeneration": 1} | status}, sub="status")


def test_an_unready_pod_under_an_always_allow_budget_goes_for_free(reg):
    """eviction.go: a pod that is not Ready, under unhealthyPodEvictionPolicy AlwaysAllow,
    is deleted without decrementing the budget (api kubernetes-1.33.0 policy/v1/types.go:
    such pods "can be evicted regardless of whether the criteria in a PDB is met")."""
    make_pod(reg, "crashing", ready=False)
    make_pod(reg, "serving")
    make_pdb(
        reg,
        "web",
        status={"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 2},
        minAvailable=2,
        unhealthyPodEvictionPolicy="AlwaysAllow",
    )
    assert reg.evict(reg.ns, "crashing", {})["status"] == "Success"
    assert gone(reg, "crashing")
    assert "disruptedPods" not in budget(reg)
    assert refusal(reg, "serving").code == 429  # a Ready pod still spends the budget


@pytest.mark.parametrize("policy", [None, "IfHealthyBudget"])
def test_an_unready_pod_goes_for_free_only_while_its_budget_is_healthy(reg, policy):
    """eviction.go: with IfHealthyBudget (the default) an unready pod is deleted without
    decrementing when the stored currentHealthy >= desiredHealthy > 0; otherwise it needs
    a disruption like any pod."""
    extra = {"unhealthyPodEvictionPolicy": policy} if policy else {}
    make_pod(reg, "a", ready=False)
    make_pdb(reg, "web", status=CLOSED, minAvailable=2, **extra)
    assert reg.evict(reg.ns, "a", {})["status"] == "Success" and gone(reg, "a")

    make_pod(reg, "b", ready=False)
    store_status(reg, {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 2})
    e = refusal(reg, "b")
    assert (e.code, e.message) == (429, VIOLATION)
    assert e.details["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 1 currently",
        }
    ]
    assert "retryAfterSeconds" not in e.details

    # desiredHealthy 0 is no healthy budget: the pod needs one of the allowed disruptions.
    store_status(reg, {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0})
    assert refusal(reg, "b").code == 429


def test_eviction_spends_the_stored_budget_and_records_the_pod(reg):
    """eviction.go checkAndDecrement: the decision is the stored status's, not a count of
    pods; a successful eviction writes disruptionsAllowed - 1, disruptedPods[pod] = now
    and, at 0, DisruptionAllowed False/InsufficientPods (component-helpers
    kubernetes-1.33.0 UpdateDisruptionAllowedCondition)."""
    make_pod(reg, "web-1")
    make_pod(reg, "web-2")
    # Two Ready pods and minAvailable 2: a recount would allow nothing; the stored status
    # (not yet updated by the controller, say) allows one.
    make_pdb(
        reg,
        "web",
        status={"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2},
        minAvailable=2,
    )
    before = time.time()
    assert reg.evict(reg.ns, "web-1", {})["status"] == "Success"
    assert gone(reg, "web-1")
    st = budget(reg)
    assert st["disruptionsAllowed"] == 0 and st["currentHealthy"] == 3
    when = dt.datetime.fromisoformat(st["disruptedPods"]["web-1"].replace("Z", "+00:00"))
    assert when.timestamp() >= before - 1
    (cond,) = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "DisruptionAllowed",
        "False",
        "InsufficientPods",
    )
    e = refusal(reg, "web-2")
    assert e.code == 429 and "needs 2 healthy pods and has 3 currently" in str(e.details)


def test_a_budget_whose_status_is_behind_its_spec_refuses_with_429(reg):
    """eviction.go checkAndDecrement: observedGeneration < generation answers 429 "still
    being processed" with retryAfterSeconds 10 (api kubernetes-1.33.0 types.go: status is
    valid only if observedGeneration equals the generation)."""
    make_pod(reg, "web-1")
    pdb = make_pdb(reg, "web", status={"disruptionsAllowed": 5, "currentHealthy": 9})
    reg.update(PDBS, reg.ns, "web", dict(pdb, spec=dict(pdb["spec"], minAvailable=1)))
    assert reg.get(PDBS, reg.ns, "web")["metadata"]["generation"] == 2
    e = refusal(reg, "web-1")
    assert (e.code, e.message) == (429, VIOLATION)
    assert e.details == {
        "causes": [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget web is still being processed by the server.",
            }
        ],
        "retryAfterSeconds": 10,
    }
    # A new budget, never seen by the controller, is behind too (observedGeneration 0).
    make_pod(reg, "db-1", labels={"app": "db"})
    make_pdb(reg, "db", selector={"matchLabels": {"app": "db"}})
    assert refusal(reg, "db-1").code == 429


def test_a_negative_or_overfull_budget_status_is_forbidden(reg):
    """eviction.go checkAndDecrement: disruptionsAllowed < 0, or more than 2000
    disruptedPods, answers 403 (apimachinery kubernetes-1.33.0 NewForbidden)."""
    make_pod(reg, "web-1")
    make_pdb(reg, "web", status={"disruptionsAllowed": -1})
    e = refusal(reg, "web-1")
    assert (e.code, e.reason) == (403, "Forbidden")
    assert e.message == (
        'poddisruptionbudget.policy "web" is forbidden: pdb disruptions allowed is negative'
    )
    crowded = {f"p{i}": "2026-01-01T00:00:00Z" for i in range(2001)}
    status = {"observedGeneration": 1, "disruptionsAllowed": 3, "disruptedPods": crowded}
    reg.update(PDBS, reg.ns, "web", {"status": status}, sub="status")
    e = refusal(reg, "web-1")
    assert e.code == 403 and "DisruptedPods map too big" in e.message


def test_a_dry_run_eviction_changes_nothing(reg):
    """eviction.go: dry-run from the request or the Eviction's deleteOptions; the
    decrement is checked but not written, the pod not deleted."""
    make_pod(reg, "web-1")
    make_pdb(reg, "web", status={"disruptionsAllowed": 1, "currentHealthy": 3})
    assert reg.evict(reg.ns, "web-1", {}, dry_run=True)["status"] == "Success"
    body = {"deleteOptions": {"dryRun": ["All"]}}
    assert reg.evict(reg.ns, "web-1", body)["status"] == "Success"
    assert not gone(reg, "web-1")
    assert budget(reg)["disruptionsAllowed"] == 1 and "disruptedPods" not in budget(reg)


def test_the_disruption_controller_does_not_count_evicted_pods_as_healthy(monkeypatch):
    """disruption.go countHealthyPods/buildDisruptedPodMap/updatePdbStatus: a pod in
    disruptedPods (less than DeletionTimeout ago, not yet terminating) is not healthy; an
    entry for a pod gone, terminating or recorded too long ago is dropped;
    observedGeneration is the budget's generation."""
    monkeypatch.setenv("K8SBOOT_STANDIN_VERSION", "v1.33.1")
    from tests.lab.standins.controller_manager import ControllerManager

    def ready(name: str, **meta) -> dict:
        return {
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}, **meta},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }

    recent = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pdb = {
        "metadata": {"name": "web", "namespace": "default", "generation": 3},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
        "status": {
            "disruptedPods": {
                "a": recent,
                "b": "2020-01-01T00:00:00Z",
                "c": recent,
                "gone": recent,
            }
        },
    }
    pods = [ready("a"), ready("b"), ready("c", deletionTimestamp=recent), ready("d")]

    written: list[dict] = []

    class Fake:
        def list(self, kind, ns=None):
            return {"Pod": pods, "PodDisruptionBudget": [pdb]}.get(kind, [])

        def update(self, obj, sub=None):
            assert sub == "status"
            written.append(obj["status"])

    cm = ControllerManager(Fake(), {})
    cm.cache = {}
    cm.disruption()
    (st,) = written
    assert st["disruptedPods"] == {"a": recent}
    # a, b, d are Ready and not terminating; a is being evicted: 2 healthy, 2 wanted.
    assert (st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"]) == (2, 2, 0)
    assert st["observedGeneration"] == 3
    assert st["conditions"][0]["reason"] == "InsufficientPods"


# --- the wire and the real kubectl ------------------------------------------------------------


@pytest.fixture
def api(reg, tmp_path):
    """The stand-in API server on a free loopback port over `reg`, a kubeconfig for a
    cluster admin (O=system:masters) and an HTTPS connection maker with its credentials."""
    with api_server(reg, tmp_path, ca_name="eviction-test-ca") as (port, kubeconfig, ctx):

        def connect() -> http.client.HTTPSConnection:
            return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)

        yield kubeconfig, connect


def post_eviction(connect, ns: str, pod: str) -> tuple[int, dict, dict]:
    conn = connect()
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}}
    conn.request(
        "POST",
        f"/api/v1/namespaces/{ns}/pods/{pod}/eviction",
        json.dumps(body),
        {"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    return resp.status, dict(resp.getheaders()), answer


def test_refusals_on_the_wire(reg, api):
    """apiserver kubernetes-1.33.0 finisher.go: the several-budgets Status is an error, so
    the HTTP status is its 500; writers.go ErrorNegotiated: retryAfterSeconds becomes a
    Retry-After header, which client-go kubernetes-1.33.0 rest/with_retry.go honours by
    retrying the request itself."""
    _, connect = api
    make_pod(reg, "web-1")
    pdb = make_pdb(reg, "web", status={"disruptionsAllowed": 0, "currentHealthy": 2})
    code, headers, answer = post_eviction(connect, reg.ns, "web-1")
    assert (code, answer["reason"], answer["message"]) == (429, "TooManyRequests", VIOLATION)
    assert "Retry-After" not in headers
    reg.update(PDBS, reg.ns, "web", dict(pdb, spec=dict(pdb["spec"], minAvailable=1)))
    code, headers, answer = post_eviction(connect, reg.ns, "web-1")
    assert code == 429 and headers["Retry-After"] == "10"
    make_pdb(reg, "all", selector={}, status={"disruptionsAllowed": 1})
    code, _, answer = post_eviction(connect, reg.ns, "web-1")
    assert code == 500 and answer["code"] == 500 and "reason" not in answer
    assert answer["message"].startswith("This pod has more than one PodDisruptionBudget")


def bound_pod(reg: Registry, name: str, node: str, ready: bool = True, labels=None) -> None:
    """A ReplicaSet's pod running on `node` (no kubelet here: its status is written)."""
    pod = reg.create(
        PODS,
        reg.ns,
        {
            "metadata": {
                "name": name,
                "labels": labels or {"app": "web"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": "web",
                        "uid": "0",
                        "controller": True,
                    }
                ],
            },
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        },
    )
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    reg.update(PODS, reg.ns, name, dict(pod, status=status), sub="status")


def kubectl_drain(kubeconfig: Path, node: str, *flags: str) -> subprocess.CompletedProcess:
    kubectl = kubectl_path(33)
    if shutil.which(kubectl) is None:
        if REQUIRED:
            pytest.fail("kubectl is not installed")
        pytest.skip("kubectl is not installed")
    return subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig),
            "drain",
            node,
            "--ignore-daemonsets",
            "--grace-period=0",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kubectl_drain_stops_at_a_pod_under_two_budgets_even_with_force(reg, api):
    """kubectl kubernetes-1.33.0 pkg/drain/drain.go evictPods: only 429 is retried, so the
    500 ends the drain at once; --force (pods without a controller) changes nothing."""
    kubeconfig, _ = api
    node = f"n-{reg.ns}"
    reg.create(BY_KIND[("", "Node")], None, {"metadata": {"name": node}, "spec": {}})
    bound_pod(reg, "web-1", node)
    make_pdb(reg, "web", status={"disruptionsAllowed": 1, "currentHealthy": 2})
    make_pdb(reg, "all", selector={}, status={"disruptionsAllowed": 1, "currentHealthy": 2})
    started = time.monotonic()
    done = kubectl_drain(kubeconfig, node, "--force", "--timeout=60s")
    assert done.returncode != 0
    assert "This pod has more than one PodDisruptionBudget" in done.stderr
    assert "will retry" not in done.stderr and time.monotonic() - started < 30
    assert not gone(reg, "web-1")


def test_kubectl_drain_moves_an_unready_pod_past_an_exhausted_budget(reg, api):
    """eviction.go unhealthy-pod branch seen through kubectl drain: AlwaysAllow lets the
    crashing pod go while the budget allows no disruption; the Ready one is retried every
    5 s (drain.go) until the timeout."""
    kubeconfig, _ = api
    node = f"n-{reg.ns}"
    reg.create(BY_KIND[("", "Node")], None, {"metadata": {"name": node}, "spec": {}})
    bound_pod(reg, "crashing", node, ready=False)
    make_pdb(
        reg,
        "web",
        status={"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 1},
        minAvailable=1,
        unhealthyPodEvictionPolicy="AlwaysAllow",
    )
    done = kubectl_drain(kubeconfig, node, "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert gone(reg, "crashing")
    bound_pod(reg, "serving", node)
    done = kubectl_drain(kubeconfig, node, "--timeout=7s")
    assert done.returncode != 0
    assert f"(will retry after 5s): {VIOLATION}" in done.stderr
    assert "global timeout reached" in done.stderr
