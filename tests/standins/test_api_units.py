"""Pieces of the API server stand-in that need no etcd."""

from __future__ import annotations

import pytest

from tests.lab.standins.apiserver import patch, policy, selectors
from tests.lab.standins.apiserver.errors import StatusError
from tests.lab.standins.kubeadm import discovery, uploadcerts
from tests.lab.standins.kubeadm.errors import KubeadmError


def test_strategic_merge_merges_containers_by_name_and_replaces_taints():
    base = {
        "spec": {
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
            "taints": [{"key": "k1", "effect": "NoSchedule"}],
        }
    }
    out = patch.strategic_merge(
        base,
        {
            "spec": {
                "containers": [{"name": "b", "image": "z"}],
                "taints": [{"key": "k2", "effect": "NoSchedule"}],
            }
        },
    )
    assert out["spec"]["containers"] == [{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]
    assert out["spec"]["taints"] == [{"key": "k2", "effect": "NoSchedule"}]
    out = patch.strategic_merge(base, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["b"]


def test_merge_and_json_patch():
    assert patch.merge_patch({"a": 1, "b": {"c": 2}}, {"b": {"c": None, "d": 3}}) == {
        "a": 1,
        "b": {"d": 3},
    }
    doc = patch.json_patch(
        {"a": [1, 2]},
        [{"op": "add", "path": "/a/-", "value": 3}, {"op": "replace", "path": "/a/0", "value": 0}],
    )
    assert doc == {"a": [0, 2, 3]}
    with pytest.raises(StatusError):
        patch.json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])


def test_selectors():
    m = selectors.label_matcher("app=web,tier in (a,b),!gone")
    assert m({"app": "web", "tier": "a"}) and not m({"app": "web", "tier": "c"})
    assert not m({"app": "web", "tier": "a", "gone": "1"})
    f = selectors.field_matcher("spec.nodeName=w1", "Pod")
    assert f({"spec": {"nodeName": "w1"}}) and not f({"spec": {"nodeName": "w2"}})
    with pytest.raises(StatusError):
        selectors.field_matcher("spec.bogus=1", "Pod")


def _pod(name, ready=True, app="web"):
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_pdb_status_arithmetic():
    pdb = {
        "metadata": {"namespace": "default", "generation": 1},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
    }
    st = policy.compute_status(pdb, [_pod("a"), _pod("b"), _pod("c", app="other")])
    assert st == {
        "currentHealthy": 2,
        "desiredHealthy": 2,
        "disruptionsAllowed": 0,
        "expectedPods": 2,
        "observedGeneration": 1,
    }
    pdb["spec"] = {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}
    st = policy.compute_status(pdb, [_pod("a"), _pod("b"), _pod("c"), _pod("d", ready=False)])
    assert st["desiredHealthy"] == 2 and st["disruptionsAllowed"] == 1


def test_jws_detached_signature_roundtrip():
    sig = discovery.detached_jws("content", "abcdef", "0123456789abcdef")
    _header, empty, _ = sig.split(".")
    assert empty == ""
    assert discovery.verify_jws("content", sig, "abcdef", "0123456789abcdef")
    assert not discovery.verify_jws("other", sig, "abcdef", "0123456789abcdef")
    assert not discovery.verify_jws("content", sig, "abcdef", "fffffffffffffff0")


def test_certificate_key_encryption():
    key = bytes.fromhex(uploadcerts.new_key())
    blob = uploadcerts.encrypt(b"secret", key)
    assert uploadcerts.decrypt(blob, key) == b"secret"
    with pytest.raises(KubeadmError, match="message authentication failed"):
        uploadcerts.decrypt(blob, bytes(32))


def test_rbac_decides_from_what_it_last_saw_while_etcd_cannot_answer():
    """Upstream's RBAC authorizer reads informer caches (pkg/kubeapiserver/authorizer/
    config.go, v1.30-v1.33: rbac.New over the informers' listers), so an anonymous
    /version is answered while etcd's leader moves; the stand-in keeps its last list."""
    from tests.lab.standins.apiserver import auth

    viewer = [
        {
            "metadata": {"name": "system:public-info-viewer"},
            "subjects": [{"kind": "Group", "name": "system:unauthenticated"}],
            "roleRef": {"kind": "ClusterRole", "name": "system:public-info-viewer"},
            "rules": [{"nonResourceURLs": ["/version"], "verbs": ["get"]}],
        }
    ]
    etcd_answers = [True]

    def listed(resource, namespace):
        if not etcd_answers[0]:
            raise OSError("etcdserver: leader changed")
        return viewer

    authorizer = auth.Authorizer(listed, ttl=0.0)
    version = auth.Attributes(verb="get", resource_request=False, path="/version")
    authorizer.check(auth.ANONYMOUS, version)
    etcd_answers[0] = False
    authorizer.check(auth.ANONYMOUS, version)  # from the cache, not a 500
    with pytest.raises(OSError):  # a cache never filled cannot decide
        auth.Authorizer(listed, ttl=0.0).check(auth.ANONYMOUS, version)
