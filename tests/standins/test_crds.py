"""CustomResourceDefinitions in the API server stand-in, against a real etcd (Debian's
etcd-server, on free loopback ports) and through the real kubectl.

Upstream sources read (kubernetes/apiextensions-apiserver at tag kubernetes-1.33.0, commit
1b7ab0f38c5b874936fb6cea84d68632bdd5ee44, the published copy of kubernetes'
staging/src/k8s.io/apiextensions-apiserver; also the kubernetes/kubernetes index copies of
customresource_handler.go at 01aa0f3f6052, naming_controller.go at 01a3009a95fd and
establishing_controller.go at 008b3652959c, which agree on everything used here):
- pkg/apiserver/customresource_handler.go: routing by `<plural>.<group>`, scope and served
  version checks, NamesAccepted or Established needed, supported patch types (JSON, merge,
  apply), status subresource, create refused while terminating.
- pkg/apiserver/customresource_discovery_controller.go: APIResourceList entries, verbs,
  versions sorted kube-aware (apimachinery kubernetes-1.33.0 pkg/version/helpers.go).
- pkg/apiserver/helpers.go and pkg/registry/customresource/tableconvertor/tableconvertor.go:
  Name plus additionalPrinterColumns, by default one Age column.
- pkg/controller/status/naming_controller.go and pkg/controller/establish/
  establishing_controller.go: acceptedNames, NamesAccepted (NoConflicts, KindConflict, ...),
  Established (Installing, then InitialNamesAccepted).
- pkg/registry/customresourcedefinition/strategy.go, etcd.go, pkg/controller/finalizer/
  crd_finalizer.go, pkg/apis/apiextensions/v1/defaults.go and validation/validation.go.
- pkg/registry/customresource/strategy.go and status_strategy.go: generation, status.
- kubernetes/kubernetes test/integration/etcd/data.go (commit
  4780fae55c21d2ac3773de475efe3831d968ad0f): etcd keys
  /registry/apiextensions.k8s.io/customresourcedefinitions/<name> and
  /registry/<group>/<plural>/[<ns>/]<name>.
- kubernetes/kubectl kubernetes-1.33.0 (commit ee99ea39d693c4f9b8f0e966b0c837a91d6953af)
  pkg/cmd/apply/apply.go: every document of `apply -f` is mapped before anything is
  applied, so a CRD and its objects in one manifest need two runs; pkg/cmd/patch/patch.go:
  "... is not supported by ..." on a 415. kubernetes/cli-runtime kubernetes-1.33.0 (commit
  46ca2a9b5e620df17716417848187836e3b3e2d1) pkg/resource/mapper.go: "resource mapping not
  found ... ensure CRDs are installed first".
- kubernetes/apimachinery kubernetes-1.30.0/1.31.0/1.32.0/1.33.0 pkg/api/validation/
  objectmeta.go and pkg/util/validation/field/errors.go: annotations above 262144 bytes
  are refused, "must have at most" until 1.31, "may not be more than" from 1.32.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import ssl
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from tests.lab.standins.apiserver import crds, errors
from tests.lab.standins.apiserver.registry import Registry
from tests.lab.standins.apiserver.resources import BY_KIND
from tests.lab.standins.apiserver.storage import Storage

from .conftest import REQUIRED
from .harness import api_server, kubectl_path

CRD = crds.CRD
NAMESPACES = BY_KIND[("", "Namespace")]


def _kubectl_or_skip(minor: int) -> str:
    path = kubectl_path(minor)
    if shutil.which(path) is None:
        if REQUIRED:
            pytest.fail(f"kubectl 1.{minor} is not installed")
        pytest.skip(f"kubectl 1.{minor} is not installed")
    return path


class Api:
    """The stand-in API server on a free loopback port, a cluster-admin kubeconfig, raw
    HTTPS requests and the real kubectl (its discovery cache in a directory per test)."""

    def __init__(
        self, reg: Registry, base: Path, port: int, kubeconfig: Path, client_ctx: ssl.SSLContext
    ):
        self.reg, self.base, self.port, self.client_ctx = reg, base, port, client_ctx
        self.kubeconfig = kubeconfig
        self.cache_dir = base / "cache"

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.client_ctx, timeout=30
        )

    def request(self, method: str, path: str, body=None, ctype="application/json"):
        conn = self.connect()
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        conn.request(method, path, data, {"Content-Type": ctype} if data is not None else {})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, json.loads(raw) if raw else None

    def kubectl(
        self, *args: str, minor: int = 33, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [
                _kubectl_or_skip(minor),
                "--kubeconfig",
                str(self.kubeconfig),
                "--cache-dir",
                str(self.cache_dir),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            input=stdin,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
            )
        return p


@pytest.fixture(scope="module")
def server(etcd, tmp_path_factory):
    base = tmp_path_factory.mktemp("crds-api")
    reg = Registry(Storage(etcd), version="v1.33.1")
    for ns in ("default", "kube-system"):
        try:
            reg.create(NAMESPACES, None, {"metadata": {"name": ns}})
        except errors.StatusError as e:
            assert e.code == 409
    with api_server(reg, base, ca_name="crds-test-ca") as (port, kubeconfig, client_ctx):
        yield reg, base, port, kubeconfig, client_ctx


@pytest.fixture
def api(server, tmp_path) -> Api:
    a = Api(*server)
    a.cache_dir = tmp_path / "kubectl-cache"
    return a


@pytest.fixture
def group(server) -> str:
    """A group of the test's own: definitions are cluster-wide, and kubectl resolves a
    plural like `widgets` in whichever group serves it, so the test's definitions (and
    with them their objects) are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.example.com"
    yield name
    reg = server[0]
    for crd in reg.list(CRD, None)[0]:
        if crd["spec"]["group"] == name:
            with contextlib.suppress(errors.StatusError):
                reg.delete(CRD, None, crd["metadata"]["name"])


def widget_crd(group: str, **extra) -> dict:
    """Namespaced, two served versions (v1 stored), status subresource, printer columns."""
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
                "categories": ["gadgets"],
            },
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": False,
                    "schema": schema,
                    "subresources": {"status": {}},
                },
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": schema,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Color",
                            "type": "string",
                            "jsonPath": ".spec.color",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                },
            ],
        },
    }
    crd["spec"].update(extra)
    return crd


def gizmo_crd(group: str) -> dict:
    """Cluster-scoped, one version, no subresources, the default columns."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gizmos.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": "gizmos", "kind": "Gizmo"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def manifest(tmp_path: Path, group: str) -> Path:
    docs = [
        widget_crd(group),
        gizmo_crd(group),
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 2, "color": "blue"},
        },
        {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": "g1"}, "spec": {}},
    ]
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def wait_established(api: Api, group: str, minor: int):
    """`kubectl wait --for condition=established` on both CRDs of the manifest."""
    return api.kubectl(
        "wait",
        "--for",
        "condition=established",
        f"crd/widgets.{group}",
        f"crd/gizmos.{group}",
        "--timeout=20s",
        minor=minor,
    )


def install(api: Api, path: Path, group: str, *flags: str, minor: int = 33) -> None:
    """What `kubectl apply -f` of CRDs with objects takes, upstream as here: the first run
    creates the definitions and fails on the objects (mapped before anything is applied),
    the definitions are waited for, a second run creates the objects."""
    api.kubectl("apply", *flags, "-f", str(path), minor=minor, check=False)
    wait_established(api, group, minor)
    api.kubectl("apply", *flags, "-f", str(path), minor=minor)


def table(text: str) -> tuple[list[str], list[str]]:
    """kubectl's table output: the header and the first row, cut at the header's column
    starts (a nil cell is printed empty)."""
    lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    cells = [lines[1][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return lines[0].split(), cells


def etcd_value(api: Api, key: str) -> tuple[dict, int] | None:
    got = api.reg.store.etcd.get(key)
    return (json.loads(got[0]), got[1]) if got else None


# --- kubectl apply ------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", [30, 31, 32, 33])
def test_kubectl_apply_of_crds_and_their_objects(api, group, tmp_path, minor):
    """kubectl kubernetes-1.33.0 pkg/cmd/apply/apply.go (GetObjects maps every document before Run
    applies any): the first apply creates both CRDs and fails for the objects with cli-runtime
    kubernetes-1.33.0 pkg/resource/mapper.go's "ensure CRDs are installed first";
    apiextensions-apiserver kubernetes-1.33.0 pkg/controller/status/naming_controller.go and
    pkg/controller/establish/establishing_controller.go make them Established, which `kubectl
    wait` sees; the second apply (kubectl's deferred discovery mapper re-reads the stale cache
    on the unknown kinds) creates the objects. Same for kubectl 1.30-1.33."""
    path = manifest(tmp_path, group)
    first = api.kubectl("apply", "-f", str(path), minor=minor, check=False)
    assert first.returncode == 1
    assert f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created" in first.stdout
    assert f"customresourcedefinition.apiextensions.k8s.io/gizmos.{group} created" in first.stdout
    assert (
        f'resource mapping not found for name: "w1" namespace: "" from "{path}": '
        f'no matches for kind "Widget" in version "{group}/v1"'
    ) in first.stderr
    assert "ensure CRDs are installed first" in first.stderr
    waited = wait_established(api, group, minor)
    assert waited.stdout.count("condition met") == 2
    second = api.kubectl("apply", "-f", str(path), minor=minor)
    assert f"widget.{group}/w1 created" in second.stdout
    assert f"gizmo.{group}/g1 created" in second.stdout
    assert f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} unchanged" in (
        second.stdout
    )
    third = api.kubectl("apply", "-f", str(path), minor=minor)
    assert f"widget.{group}/w1 unchanged" in third.stdout


def test_definitions_and_objects_as_stored(api, group, tmp_path):
    """apiextensions-apiserver kubernetes-1.33.0 pkg/registry/customresourcedefinition/strategy.go
    (PrepareForCreate: status cleared but for storedVersions, generation 1),
    pkg/apis/apiextensions/v1/defaults.go (singular, listKind, conversion None),
    naming_controller.go (acceptedNames, NamesAccepted NoConflicts) and
    establishing_controller.go (Established InitialNamesAccepted);
    pkg/registry/customresource/strategy.go (generation 1); kubernetes/kubernetes
    test/integration/etcd/data.go at 4780fae55c21 (etcd keys, objects kept at the storage
    version); customresource_handler.go (every served version served, conversion None)."""
    install(api, manifest(tmp_path, group), group)
    crd, _ = etcd_value(
        api, f"/registry/apiextensions.k8s.io/customresourcedefinitions/gizmos.{group}"
    )
    assert crd["spec"]["names"] == {
        "plural": "gizmos",
        "kind": "Gizmo",
        "singular": "gizmo",
        "listKind": "GizmoList",
    }
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert crd["status"]["acceptedNames"] == crd["spec"]["names"]
    assert crd["status"]["storedVersions"] == ["v1"]
    conds = {c["type"]: c for c in crd["status"]["conditions"]}
    assert (conds["NamesAccepted"]["status"], conds["NamesAccepted"]["reason"]) == (
        "True",
        "NoConflicts",
    )
    assert conds["Established"]["status"] == "True"
    assert conds["Established"]["reason"] == "InitialNamesAccepted"
    assert crd["metadata"]["generation"] == 1

    widget, rev = etcd_value(api, f"/registry/{group}/widgets/default/w1")
    assert widget["apiVersion"] == f"{group}/v1" and widget["kind"] == "Widget"
    gizmo, _ = etcd_value(api, f"/registry/{group}/gizmos/g1")
    assert gizmo["metadata"]["name"] == "g1" and "namespace" not in gizmo["metadata"]
    got = json.loads(api.kubectl("get", f"widget.{group}", "w1", "-o", "json").stdout)
    assert got["metadata"]["resourceVersion"] == str(rev)
    assert got["metadata"]["generation"] == 1
    assert got["metadata"]["uid"] and got["metadata"]["creationTimestamp"]
    assert got["metadata"]["namespace"] == "default"
    # The other served version: the same object with its apiVersion (conversion None).
    beta = json.loads(api.kubectl("get", f"widgets.v1beta1.{group}", "w1", "-o", "json").stdout)
    assert beta["apiVersion"] == f"{group}/v1beta1" and beta["spec"] == got["spec"]
    crd_table = api.kubectl("get", "crd", f"widgets.{group}").stdout.splitlines()
    assert crd_table[0].split() == ["NAME", "CREATED", "AT"]


# --- reading, patching, deleting --------------------------------------------------------------


def test_get_list_patch_delete_with_kubectl(api, group, tmp_path):
    """apiextensions-apiserver kubernetes-1.33.0 pkg/apiserver/helpers.go and
    pkg/registry/customresource/tableconvertor/tableconvertor.go (Name plus
    additionalPrinterColumns, priority 1 only with -o wide, nil cells; by default Name and
    Age), customresource_discovery_controller.go (names kubectl resolves: plural, singular,
    short name, kind.group, category), customresource_handler.go supportedTypes (JSON,
    merge, apply: strategic merge is a 415, which kubectl kubernetes-1.33.0
    pkg/cmd/patch/patch.go reports as "... is not supported by <gvk>"),
    pkg/registry/customresource/strategy.go and status_strategy.go (generation on changes
    outside metadata; status only through /status when the subresource exists)."""
    install(api, manifest(tmp_path, group), group)
    header, row = table(api.kubectl("get", "widgets").stdout)
    assert header == ["NAME", "SIZE", "READY", "AGE"]
    assert row[:3] == ["w1", "2", ""]  # no Ready condition: a nil cell, printed empty
    header, row = table(api.kubectl("get", "widgets", "-o", "wide").stdout)
    assert header == ["NAME", "SIZE", "READY", "COLOR", "AGE"] and row[3] == "blue"
    for name in ("widget", "wd", f"Widget.{group}", f"widgets.{group}", "gadgets"):
        out = api.kubectl("get", name, "-o", "name").stdout.split()
        assert out == [f"widget.{group}/w1"], name
    assert api.kubectl("get", "widgets", "-A").stdout.splitlines()[0].split()[:2] == [
        "NAMESPACE",
        "NAME",
    ]
    gizmos = api.kubectl("get", "gizmos").stdout.splitlines()
    assert gizmos[0].split() == ["NAME", "AGE"] and gizmos[1].split()[0] == "g1"

    patched = api.kubectl(
        "patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":3}}', "-o", "json"
    )
    assert json.loads(patched.stdout)["metadata"]["generation"] == 2
    refused = api.kubectl("patch", "widget", "w1", "-p", '{"spec":{"size":4}}', check=False)
    assert refused.returncode != 0
    assert (
        f"application/strategic-merge-patch+json is not supported by {group}/v1, Kind=Widget"
        in refused.stderr
    )
    assert (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    ) in refused.stderr
    api.kubectl(
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/spec/shape","value":"round"}]',
    )
    # status: ignored on the main resource, written through /status without a new generation
    ready = '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
    api.kubectl("patch", "widget", "w1", "--type=merge", "-p", ready)
    obj = json.loads(api.kubectl("get", "widget", "w1", "-o", "json").stdout)
    assert "status" not in obj and obj["metadata"]["generation"] == 3
    api.kubectl("patch", "widget", "w1", "--subresource=status", "--type=merge", "-p", ready)
    obj = json.loads(api.kubectl("get", "widget", "w1", "-o", "json").stdout)
    assert obj["status"]["conditions"][0]["status"] == "True"
    assert obj["metadata"]["generation"] == 3 and obj["spec"]["shape"] == "round"
    assert table(api.kubectl("get", "widgets").stdout)[1][:3] == ["w1", "3", "True"]
    # without a status subresource, status is an ordinary field and bumps the generation
    api.kubectl("patch", "gizmo", "g1", "--type=merge", "-p", '{"status":{"phase":"on"}}')
    gizmo = json.loads(api.kubectl("get", "gizmo", "g1", "-o", "json").stdout)
    assert gizmo["status"] == {"phase": "on"} and gizmo["metadata"]["generation"] == 2
    status, body = api.request("GET", f"/apis/{group}/v1/gizmos/g1/status")
    assert (status, body["message"]) == (404, f'gizmos.{group} "g1" not found')

    assert f'widget.{group} "w1" deleted' in api.kubectl("delete", "widget", "w1").stdout
    assert f'gizmo.{group} "g1" deleted' in api.kubectl("delete", "gizmo", "g1").stdout
    assert etcd_value(api, f"/registry/{group}/widgets/default/w1") is None
    missing = api.kubectl("get", "widget", "w1", check=False)
    assert f'widgets.{group} "w1" not found' in missing.stderr


def test_scope_and_versions_are_enforced_on_the_wire(api, group):
    """apiextensions-apiserver kubernetes-1.33.0 pkg/apiserver/customresource_handler.go ServeHTTP:
    a cluster-scoped resource under a namespace, a namespaced one by name without a
    namespace, and an unserved version all go to the delegate (404); list across
    namespaces is allowed; pkg/registry/customresource/strategy.go PrepareForCreate drops
    status when the status subresource exists."""
    api.reg.create(CRD, None, widget_crd(group))
    api.reg.create(CRD, None, gizmo_crd(group))
    not_found = "the server could not find the requested resource"
    for path in (
        f"/apis/{group}/v1/namespaces/default/gizmos",
        f"/apis/{group}/v1/widgets/w1",
        f"/apis/{group}/v2/namespaces/default/widgets",
    ):
        status, body = api.request("GET", path)
        assert (status, body["message"]) == (404, not_found), path
    status, body = api.request("GET", f"/apis/{group}/v1/widgets")
    assert status == 200 and body["kind"] == "WidgetList" and body["items"] == []
    status, body = api.request(
        "POST",
        f"/apis/{group}/v1/namespaces/default/widgets",
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "x"},
            "status": {"a": 1},
        },
    )
    assert status == 201 and "status" not in body  # create cannot set status
    assert body["metadata"]["generation"] == 1
    status, body = api.request(
        "POST",
        f"/apis/{group}/v1/namespaces/default/widgets",
        {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "x"}},
    )
    assert (status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == f'widgets.{group} "x" already exists'


# --- watch ---------------------------------------------------------------------------------------


def test_watch_sees_added_modified_deleted(api, group):
    """apiextensions-apiserver kubernetes-1.33.0 customresource_handler.go serveResource: watch is
    ListResource with forceWatch on the generic store, i.e. an etcd watch on the prefix;
    objects come at the version watched (conversion None) whatever version wrote them."""
    api.reg.create(CRD, None, widget_crd(group))
    base = f"/apis/{group}/v1/namespaces/default/widgets"
    _, listed = api.request("GET", base)
    events: list[tuple[str, str, str]] = []
    conn = api.connect()
    conn.request(
        "GET", f"{base}?watch=true&resourceVersion={listed['metadata']['resourceVersion']}"
    )
    resp = conn.getresponse()
    assert resp.status == 200

    def read():
        while True:
            line = resp.readline()
            if not line:
                return
            ev = json.loads(line)
            obj = ev["object"]
            events.append((ev["type"], obj["metadata"]["name"], obj["apiVersion"]))
            if ev["type"] == "DELETED":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    w = {"apiVersion": f"{group}/v1beta1", "kind": "Widget", "metadata": {"name": "w"}}
    assert api.request("POST", f"/apis/{group}/v1beta1/namespaces/default/widgets", w)[0] == 201
    status, _ = api.request(
        "PATCH", f"{base}/w", {"spec": {"size": 1}}, "application/merge-patch+json"
    )
    assert status == 200
    assert api.request("DELETE", f"{base}/w")[0] == 200
    reader.join(20)
    conn.close()
    assert events == [
        ("ADDED", "w", f"{group}/v1"),
        ("MODIFIED", "w", f"{group}/v1"),
        ("DELETED", "w", f"{group}/v1"),
    ]


# --- discovery -----------------------------------------------------------------------------------


def test_discovery_lists_the_group_and_its_resources(api, group, tmp_path):
    """apiextensions-apiserver kubernetes-1.33.0
    pkg/apiserver/customresource_discovery_controller.go: served versions in kube-aware order
    (apimachinery kubernetes-1.33.0 pkg/version/ helpers.go: v1 before v1beta1, v1 preferred),
    APIResource entries with singular name, scope, kind, verbs, short names, categories,
    storageVersionHash (apiserver pkg/endpoints/discovery/storageversionhash.go), the status
    subresource; pkg/registry/customresourcedefinition/etcd.go (crd, crds, api-extensions);
    kubectl api-resources shows them."""
    api.reg.create(CRD, None, widget_crd(group))
    api.reg.create(CRD, None, gizmo_crd(group))
    _, groups = api.request("GET", "/apis")
    mine = next(g for g in groups["groups"] if g["name"] == group)
    assert [v["version"] for v in mine["versions"]] == ["v1", "v1beta1"]
    assert mine["preferredVersion"] == {"groupVersion": f"{group}/v1", "version": "v1"}
    _, one = api.request("GET", f"/apis/{group}")
    assert one["kind"] == "APIGroup" and one["versions"] == mine["versions"]
    _, v1 = api.request("GET", f"/apis/{group}/v1")
    by_name = {r["name"]: r for r in v1["resources"]}
    assert set(by_name) == {"widgets", "widgets/status", "gizmos"}
    widgets = by_name["widgets"]
    assert widgets["singularName"] == "widget" and widgets["namespaced"] is True
    assert widgets["kind"] == "Widget" and widgets["shortNames"] == ["wd"]
    assert widgets["categories"] == ["gadgets"]
    assert sorted(widgets["verbs"]) == sorted(crds.CR_VERBS)
    assert widgets["storageVersionHash"] == crds.storage_version_hash(group, "v1", "Widget")
    assert by_name["widgets/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["gizmos"]["namespaced"] is False and by_name["gizmos"]["singularName"] == "gizmo"
    _, beta = api.request("GET", f"/apis/{group}/v1beta1")
    assert [r["name"] for r in beta["resources"]] == ["widgets", "widgets/status"]
    crd_entry = next(
        r
        for r in api.request("GET", "/apis/apiextensions.k8s.io/v1")[1]["resources"]
        if r["name"] == "customresourcedefinitions"
    )
    assert crd_entry["shortNames"] == ["crd", "crds"] and crd_entry["namespaced"] is False
    listed = api.kubectl("api-resources", f"--api-group={group}").stdout.splitlines()
    assert listed[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert [line.split() for line in listed[1:]] == [
        ["gizmos", f"{group}/v1", "false", "Gizmo"],
        ["widgets", "wd", f"{group}/v1", "true", "Widget"],
    ]
    _, openapi_root = api.request("GET", "/openapi/v3")
    assert f"apis/{group}/v1" in openapi_root["paths"]


# --- deletion -----------------------------------------------------------------------------------


def test_deleting_a_crd_deletes_its_objects(api, group, tmp_path):
    """apiextensions-apiserver kubernetes-1.33.0 pkg/registry/customresourcedefinition/etcd.go
    Delete and pkg/controller/finalizer/crd_finalizer.go: the objects (all namespaces) go, then
    the definition; its group leaves discovery. kubectl 1.33 with a stale discovery cache gets
    the list's 404, with a fresh one "doesn't have a resource type"."""
    install(api, manifest(tmp_path, group), group)
    api.kubectl("create", "namespace", f"ns-{group.split('.')[0]}")
    api.kubectl(
        "create",
        "-n",
        f"ns-{group.split('.')[0]}",
        "-f",
        "-",
        stdin=json.dumps(
            {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w2"}}
        ),
    )
    assert api.reg.store.etcd.range_prefix(f"/registry/{group}/widgets/")[0]
    out = api.kubectl("delete", "crd", f"widgets.{group}")
    assert f'customresourcedefinition.apiextensions.k8s.io "widgets.{group}" deleted' in out.stdout
    assert api.reg.store.etcd.range_prefix(f"/registry/{group}/widgets/")[0] == []
    assert (
        etcd_value(api, f"/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.{group}")
        is None
    )
    # kubectl's discovery cache still has the resource: the list is a 404
    stale = api.kubectl("get", "widgets", check=False)
    assert stale.returncode != 0
    assert (
        f'Error from server (NotFound): Unable to list "{group}/v1, Resource=widgets": '
        "the server could not find the requested resource"
    ) in stale.stderr
    api.cache_dir = tmp_path / "fresh-cache"  # discovery read anew: no such resource type
    gone = api.kubectl("get", "widgets", check=False)
    assert gone.returncode != 0
    assert 'the server doesn\'t have a resource type "widgets"' in gone.stderr
    _, v1 = api.request("GET", f"/apis/{group}/v1")
    assert [r["name"] for r in v1["resources"]] == ["gizmos"]
    api.kubectl("delete", "crd", f"gizmos.{group}")
    _, groups = api.request("GET", "/apis")
    assert group not in [g["name"] for g in groups["groups"]]
    assert api.reg.store.etcd.range_prefix(f"/registry/{group}/")[0] == []


def test_an_object_with_a_finalizer_holds_its_crd_terminating(api, group):
    """apiextensions-apiserver kubernetes-1.33.0 crd_finalizer.go: objects are deleted through the
    normal deletion, so their finalizers hold them; the definition meanwhile carries the
    customresourcecleanup finalizer and Terminating (InstanceDeletionInProgress),
    customresource_handler.go refuses create with 405 and
    customresource_discovery_controller.go drops create/update/patch from the verbs; the
    definition goes when the last object does."""
    api.reg.create(CRD, None, widget_crd(group))
    base = f"/apis/{group}/v1/namespaces/default/widgets"
    held = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
    }
    assert api.request("POST", base, held)[0] == 201
    status, body = api.request(
        "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"
    )
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    crd = api.reg.get(CRD, None, f"widgets.{group}")
    assert crd["metadata"]["finalizers"] == [crds.CLEANUP_FINALIZER]
    assert crds.condition(crd, "Terminating")["reason"] == "InstanceDeletionInProgress"
    _, obj = api.request("GET", f"{base}/held")
    assert obj["metadata"]["deletionTimestamp"]
    status, body = api.request(
        "POST", base, {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "new"}}
    )
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    assert body["message"] == "create not allowed while custom resource definition is terminating"
    _, v1 = api.request("GET", f"/apis/{group}/v1")
    assert v1["resources"][0]["verbs"] == list(crds.TERMINATING_VERBS)
    status, _ = api.request(
        "PATCH", f"{base}/held", {"metadata": {"finalizers": None}}, "application/merge-patch+json"
    )
    assert status == 200
    with pytest.raises(errors.StatusError) as caught:
        api.reg.get(CRD, None, f"widgets.{group}")
    assert caught.value.code == 404


def test_deleting_a_namespace_deletes_its_custom_objects(api, group):
    """kubernetes/kubernetes cmd/kube-controller-manager/app/core.go (index
    copy, unpinned commit): the namespace controller deletes every resource that
    ServerPreferredNamespacedResources lists, custom ones included (here synchronously, as
    the stand-in deletes namespaces)."""
    api.reg.create(CRD, None, widget_crd(group))
    ns = f"ns-{group.split('.')[0]}"
    api.reg.create(NAMESPACES, None, {"metadata": {"name": ns}})
    w = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert api.request("POST", f"/apis/{group}/v1/namespaces/{ns}/widgets", w)[0] == 201
    api.kubectl("delete", "namespace", ns)
    assert api.reg.store.etcd.range_prefix(f"/registry/{group}/widgets/{ns}/")[0] == []


# --- unknown kinds, conflicts, server-side apply, big CRDs ---------------------------------------


def test_an_object_of_an_unknown_kind_fails_like_upstream(api, tmp_path):
    """cli-runtime kubernetes-1.33.0 pkg/resource/mapper.go infoForData: a kind discovery
    does not know is a NoKindMatchError, "resource mapping not found ... ensure CRDs are
    installed first", client-side and server-side alike (before that, kubectl kubernetes-
    1.33.0 pkg/validation/schema.go validates it against OpenAPI v2, which has no schema for
    it); the URL of such a resource is a 404 (customresource_handler.go's delegate)."""
    path = tmp_path / "thing.yaml"
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": "nowhere.example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
        )
    )
    for flags in ((), ("--server-side",)):
        out = api.kubectl("apply", *flags, "-f", str(path), check=False)
        assert out.returncode == 1
        assert (
            f'error: resource mapping not found for name: "t" namespace: "" from "{path}": '
            'no matches for kind "Thing" in version "nowhere.example.com/v1"\n'
            "ensure CRDs are installed first"
        ) in out.stderr
    status, _ = api.request("GET", "/apis/nowhere.example.com/v1/things")
    assert status == 404


def test_conflicting_names_are_not_accepted(api, group):
    """apiextensions-apiserver kubernetes-1.33.0 pkg/controller/status/naming_controller.go: a
    second definition of the group asking for a kind another one holds gets NamesAccepted False
    (KindConflict, '"Widget" is already in use'), Established False, and
    customresource_handler.go does not serve it; deleting the holder requeues the group and it
    is accepted; a later names change (a short name) is accepted too."""
    api.reg.create(CRD, None, widget_crd(group))
    rival = widget_crd(group)
    rival["metadata"]["name"] = f"doohickeys.{group}"
    rival["spec"]["names"] = {"plural": "doohickeys", "kind": "Widget", "listKind": "Doohickeys"}
    api.reg.create(CRD, None, rival)
    got = api.reg.get(CRD, None, f"doohickeys.{group}")
    named = crds.condition(got, "NamesAccepted")
    assert (named["status"], named["reason"], named["message"]) == (
        "False",
        "KindConflict",
        '"Widget" is already in use',
    )
    assert crds.condition(got, "Established")["status"] == "False"
    assert api.request("GET", f"/apis/{group}/v1/doohickeys")[0] == 404
    api.reg.delete(CRD, None, f"widgets.{group}")
    got = api.reg.get(CRD, None, f"doohickeys.{group}")
    assert crds.is_true(got, "NamesAccepted") and crds.is_true(got, "Established")
    assert got["status"]["acceptedNames"]["kind"] == "Widget"
    assert api.request("GET", f"/apis/{group}/v1/doohickeys")[0] == 200
    # a names change is taken up by the naming controller again
    status, _ = api.request(
        "PATCH",
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/doohickeys.{group}",
        {"spec": {"names": {"shortNames": ["dh"]}}},
        "application/merge-patch+json",
    )
    assert status == 200
    got = api.reg.get(CRD, None, f"doohickeys.{group}")
    assert got["status"]["acceptedNames"]["shortNames"] == ["dh"]
    assert got["metadata"]["generation"] == 2


def test_invalid_definitions_are_refused(api, group):
    """apiextensions-apiserver kubernetes-1.33.0 pkg/apis/apiextensions/validation/
    validation.go (name must be plural.group, exactly one storage version) and
    apimachinery kubernetes-1.33.0 pkg/api/errors/errors.go NewInvalid (qualified kind,
    errors aggregated in brackets)."""
    bad = widget_crd(group)
    bad["metadata"]["name"] = "wrong.example.com"
    bad["spec"]["versions"][0]["storage"] = True
    status, body = api.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad
    )
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'CustomResourceDefinition.apiextensions.k8s.io "wrong.example.com" is invalid: ['
        'metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+'
        "spec.group, spec.versions: Invalid value: ...: must have exactly one version marked "
        "as storage version]"
    )


def test_kubectl_apply_server_side(api, group, tmp_path):
    """kubectl kubernetes-1.33.0 pkg/cmd/apply/apply.go with --server-side: the
    same two runs as client-side (mapping first); the stand-in's apply is a merge patch
    that creates missing objects; a changed manifest applied again bumps the generation
    (apiextensions-apiserver kubernetes-1.33.0 pkg/registry/customresource/strategy.go)."""
    path = manifest(tmp_path, group)
    first = api.kubectl("apply", "--server-side", "-f", str(path), check=False)
    assert first.returncode == 1
    assert f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} serverside-applied" in (
        first.stdout
    )
    assert "ensure CRDs are installed first" in first.stderr
    api.kubectl(
        "wait", "--for", "condition=established", f"crd/widgets.{group}", f"crd/gizmos.{group}"
    )
    second = api.kubectl("apply", "--server-side", "-f", str(path))
    assert f"widget.{group}/w1 serverside-applied" in second.stdout
    assert f"gizmo.{group}/g1 serverside-applied" in second.stdout
    docs = list(yaml.safe_load_all(path.read_text()))
    docs[2]["spec"]["size"] = 7
    path.write_text(yaml.safe_dump_all(docs))
    api.kubectl("apply", "--server-side", "-f", str(path))
    obj = json.loads(api.kubectl("get", "widget", "w1", "-o", "json").stdout)
    assert obj["spec"] == {"size": 7, "color": "blue"} and obj["metadata"]["generation"] == 2


def test_a_crd_too_big_for_client_side_apply(api, group, tmp_path):
    """apimachinery kubernetes-1.32.0/1.33.0 pkg/api/validation/objectmeta.go
    (TotalAnnotationSizeLimitB) and pkg/util/validation/field/errors.go TooLong ("may not
    be more than"), printed by kubectl kubernetes-1.33.0 pkg/cmd/util/helpers.go from the
    Status causes: the last-applied annotation of a CRD above 256 KiB is refused (what
    Calico's operator CRDs run into with a client-side apply); create and server-side
    apply store no such annotation and work."""
    crd = gizmo_crd(group)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "x" * 300_000
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(crd))
    out = api.kubectl("apply", "-f", str(path), check=False)
    assert out.returncode == 1
    assert (
        f'The CustomResourceDefinition "gizmos.{group}" is invalid: metadata.annotations: '
        "Too long: may not be more than 262144 bytes"
    ) in out.stderr
    api.kubectl("create", "-f", str(path))
    api.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    api.kubectl("wait", "--for", "condition=established", f"crd/gizmos.{group}")


# --- pieces without a server -------------------------------------------------------------------


def test_versions_are_ordered_kube_aware():
    """apimachinery kubernetes-1.33.0 pkg/version/helpers_test.go pairs, and the order the
    CRD versioning docs give as an example."""
    for greater, lesser in (
        ("v2", "v1"),
        ("v10", "v2"),
        ("v1", "v2alpha1"),
        ("v1", "v2beta1"),
        ("v1alpha2", "v1alpha1"),
        ("v1beta1", "v2alpha3"),
        ("v1alpha10", "v1alpha2"),
        ("v1beta10", "v1beta2"),
        ("v1beta2", "foo"),
        ("bar", "foo"),
        ("version1", "version2"),
        ("version1", "version10"),
    ):
        assert crds.compare_versions(greater, lesser) > 0, (greater, lesser)
        assert crds.compare_versions(lesser, greater) < 0, (greater, lesser)
    mixed = ["v1", "foo10", "v12alpha1", "v2", "v11beta2", "foo1", "v3beta1", "v10beta3"]
    mixed += ["v10", "v11alpha2"]
    assert crds.sort_versions(mixed) == [
        "v10",
        "v2",
        "v1",
        "v11beta2",
        "v10beta3",
        "v3beta1",
        "v12alpha1",
        "v11alpha2",
        "foo1",
        "foo10",
    ]


def test_printer_column_jsonpaths():
    """apiextensions-apiserver kubernetes-1.33.0
    pkg/registry/customresource/tableconvertor/tableconvertor.go: the first result of each
    column's JSONPath; string columns printed as Go's fmt prints the value, integer/boolean
    columns typed, missing values nil."""
    from tests.lab.standins.apiserver import tables

    obj = {
        "metadata": {"name": "w", "labels": {"app.kubernetes.io/name": "x"}},
        "spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}], "on": True},
        "status": {
            "conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "Done"},
            ]
        },
    }
    first = tables.jsonpath_first
    assert first(obj, ".spec.replicas") == 3
    assert first(obj, ".spec.ports[1].port") == 443
    assert first(obj, ".spec.ports[*].port") == 80
    assert first(obj, ".metadata.labels['app.kubernetes.io/name']") == "x"
    assert first(obj, '.status.conditions[?(@.type=="Ready")].reason') == "Done"
    assert first(obj, ".status.conditions[?(@.type!='Synced')].status") == "True"
    assert first(obj, ".spec.missing") is tables._MISSING
    res = crds.resource_for(
        {
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "additionalPrinterColumns": [
                            {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
                            {"name": "Ports", "type": "string", "jsonPath": ".spec.ports"},
                            {"name": "Count", "type": "integer", "jsonPath": ".spec.replicas"},
                            {"name": "Gone", "type": "string", "jsonPath": ".spec.gone"},
                        ],
                    }
                ],
            },
        },
        "v1",
    )
    table = tables.to_table(res, [obj], "1", "None")
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "On",
        "Ports",
        "Count",
        "Gone",
    ]
    assert table["rows"][0]["cells"] == ["w", True, "[map[port:80] map[port:443]]", 3, None]
