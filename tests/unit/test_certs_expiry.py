"""kubeadm's certificate expiry, as JSON and as its table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from k8sboot.certs.expiry import Certificate, parse_json, parse_text

NOW = datetime(2026, 6, 1, tzinfo=UTC)

DOCUMENT = {
    "kind": "CertificateExpirationInfo",
    "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
    "certificates": [
        {
            "name": "admin.conf",
            "expirationDate": "2027-05-31T10:00:00Z",
            "residualTime": 31500000,
            "caName": "ca",
            "externallyManaged": False,
        },
        {"name": "super-admin.conf", "caName": "ca", "externallyManaged": False, "missing": True},
        {"name": "apiserver", "expirationDate": "2026-06-11T00:00:00Z", "caName": "ca"},
    ],
    "certificateAuthorities": [
        {"name": "ca", "expirationDate": "2035-05-29T10:00:00Z", "externallyManaged": False}
    ],
}

TABLE = "\n".join(  # kubeadm's columns, as wide as it prints them
    [
        "CERTIFICATE                EXPIRES                  RESIDUAL TIME   "
        "CERTIFICATE AUTHORITY   EXTERNALLY MANAGED",
        "admin.conf                 May 31, 2027 10:00 UTC   364d            ca" + " " * 22 + "no",
        "apiserver                  Jun 11, 2026 00:00 UTC   9d              ca" + " " * 22 + "no",
        "super-admin.conf" + " " * 76 + "!MISSING!",
        "!MISSING! scheduler.conf",
        "",
        "CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED",
        "ca                      May 29, 2035 10:00 UTC   8y              no",
        "front-proxy-ca          May 29, 2035 10:00 UTC   8y              yes",
    ]
)


def test_json_and_table_say_the_same() -> None:
    from_json = {c.name: c for c in parse_json("cp1", DOCUMENT)}
    from_table = {c.name: c for c in parse_text("cp1", TABLE)}
    for name in ("admin.conf", "apiserver", "super-admin.conf", "ca"):
        assert from_json[name].expires == from_table[name].expires, name
        if from_json[name].expires is not None:  # a missing row names no CA
            assert from_json[name].authority == from_table[name].authority, name
    assert from_table["front-proxy-ca"].external and from_table["front-proxy-ca"].authority == ""
    assert from_table["scheduler.conf"].expires is None
    assert from_json["apiserver"].expires == datetime(2026, 6, 11, tzinfo=UTC)


def test_verdicts() -> None:
    certs = {c.name: c for c in parse_json("cp1", DOCUMENT)}
    assert certs["admin.conf"].verdict(NOW)[0] == "ok"
    status, detail = certs["apiserver"].verdict(NOW)
    assert status == "warn" and detail.startswith("expires in 10 days")
    assert certs["apiserver"].verdict(NOW, warn_days=5)[0] == "ok"
    # super-admin.conf lives on the first control plane only: missing elsewhere is normal.
    assert certs["super-admin.conf"].verdict(NOW)[0] == "ok"
    gone = Certificate("cp2", "apiserver", "ca", None, False)
    assert gone.verdict(NOW) == ("fail", "missing")
    expired = Certificate("cp2", "apiserver", "ca", NOW - timedelta(hours=1), False)
    assert expired.verdict(NOW)[0] == "fail"
