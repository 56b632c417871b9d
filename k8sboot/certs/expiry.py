"""Certificate expiry as `kubeadm certs check-expiration` reports it on a control plane.

kubeadm knows which certificates it manages (PKI files and the client certificates inside
kubeconfig files), so k8sboot asks it rather than guessing paths: `-o json` where kubeadm
has it, its table otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from k8sboot.errors import MachineError
from k8sboot.transport import Askable

WARN_DAYS = 30
# kubeadm writes super-admin.conf (1.29+) on the control plane it initialised, never on
# the ones that joined; its absence there is normal.
FIRST_ONLY = ("super-admin.conf",)
COMMAND = "kubeadm certs check-expiration"

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Certificate:
    host: str
    name: str
    authority: str  # the CA that signed it; "" for a CA
    expires: datetime | None  # None: missing
    external: bool  # externally managed: kubeadm cannot renew it

    def days_left(self, now: datetime) -> float | None:
        if self.expires is None:
            return None
        return (self.expires - now).total_seconds() / 86400

    def verdict(self, now: datetime, warn_days: float = WARN_DAYS) -> tuple[Status, str]:
        left = self.days_left(now)
        if left is None and self.name in FIRST_ONLY:
            return "ok", "not here (kubeadm keeps it on the first control plane only)"
        if left is None:
            return "fail", "missing"
        when = self.expires.strftime("%Y-%m-%d %H:%M UTC")  # type: ignore[union-attr]
        if left <= 0:
            return "fail", f"expired {when}"
        if left < warn_days:
            return "warn", f"expires in {_span(left)} ({when})"
        return "ok", f"{_span(left)} left ({when})"


def _span(days: float) -> str:
    if days >= 365:
        return f"{days / 365:.1f} years"
    if days >= 1:
        return f"{days:.0f} days"
    return f"{days * 24:.0f} hours"


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def parse_json(host: str, document: dict[str, Any]) -> list[Certificate]:
    """kubeadm's CertificateExpirationInfo (output.kubeadm.k8s.io)."""
    found = []
    for entry in document.get("certificates") or []:
        found.append(
            Certificate(
                host,
                entry["name"],
                entry.get("caName") or "?",
                None if entry.get("missing") else _date(entry.get("expirationDate")),
                bool(entry.get("externallyManaged")),
            )
        )
    for entry in document.get("certificateAuthorities") or []:
        found.append(
            Certificate(
                host,
                entry["name"],
                "",
                None if entry.get("missing") else _date(entry.get("expirationDate")),
                bool(entry.get("externallyManaged")),
            )
        )
    return found


_ROW = re.compile(
    r"^(?P<name>\S+)\s+(?P<date>[A-Z][a-z]{2} \d{2}, \d{4} \d{2}:\d{2} UTC)\s+\S+\s+"
    r"(?:(?P<ca>\S+)\s+)?(?P<external>yes|no)\s*$"
)
MISSING = "!MISSING!"


def parse_text(host: str, text: str) -> list[Certificate]:
    """kubeadm's table: certificates first, then (after their own header) the CAs."""
    found, in_authorities = [], False
    for line in text.splitlines():
        if line.startswith("CERTIFICATE AUTHORITY"):
            in_authorities = True
            continue
        if line.startswith("CERTIFICATE"):
            continue
        if MISSING in line:  # kubeadm has printed the marker before and after the name
            name = next((w for w in line.split() if w != MISSING), None)
            if name:
                found.append(Certificate(host, name, "" if in_authorities else "?", None, False))
            continue
        match = _ROW.match(line.strip())
        if not match:
            continue
        expires = datetime.strptime(match["date"], "%b %d, %Y %H:%M UTC").replace(tzinfo=UTC)
        found.append(
            Certificate(
                host,
                match["name"],
                "" if in_authorities else (match["ca"] or "?"),
                expires,
                match["external"] == "yes",
            )
        )
    return found


def check_expiration(connection: Askable) -> list[Certificate]:
    """Every kubeadm-managed certificate on this control plane."""
    result = connection.ask(
        f"{COMMAND} -o json", check=False, timeout=120, shown=f"{COMMAND} -o json"
    )
    if result.ok:
        try:
            return parse_json(connection.name, json.loads(result.stdout))
        except (ValueError, KeyError):
            pass  # an older kubeadm printed its table after all
    elif "unknown shorthand flag" not in result.stderr and "unknown flag" not in result.stderr:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MachineError(f"{connection.name}: `{COMMAND}` failed: {tail[0]}")
    table = connection.ask(COMMAND, timeout=120)
    found = parse_text(connection.name, table.stdout)
    if not found:
        raise MachineError(f"{connection.name}: `{COMMAND}` listed no certificate")
    return found
