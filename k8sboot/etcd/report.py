"""What the read-only etcd commands print: health and status, members compared with the
cluster file and the Node objects, alarms, the catalogue. JSON documents for machines,
rich tables for people."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from k8sboot.etcd import topology
from k8sboot.etcd.archive import Key
from k8sboot.etcd.catalogue import BAD_STATES, Manifest, Store, age, state
from k8sboot.etcd.client import Member, peer_url
from k8sboot.etcd.observe import EtcdView, host_for
from k8sboot.step import Context


def size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _member_row(ctx: Context, view: EtcdView, member: Member) -> dict[str, Any]:
    status = view.statuses.get(member.id)
    endpoint = view.endpoint_of(member)
    health = view.health.get(endpoint or "")
    host = host_for(ctx, member)
    return {
        "id": member.hex_id,
        "name": member.name,
        "host": host.name if host else None,
        "peer_urls": list(member.peer_urls),
        "endpoint": endpoint,
        "learner": member.learner,
        "healthy": view.is_healthy(member),
        "leader": member.id == view.leader_id,
        "version": status.version if status else None,
        "db_size": status.db_size if status else None,
        "db_size_in_use": status.db_size_in_use if status else None,
        "quota": view.quota,
        "revision": status.revision if status else None,
        "raft_index": status.raft_index if status else None,
        "raft_term": status.raft_term if status else None,
        "error": (health.error if health and health.error else None)
        or (", ".join(status.errors) if status and status.errors else None),
    }


def health_document(ctx: Context, view: EtcdView) -> dict[str, Any]:
    return {
        "ok": view.healthy,
        "cluster": ctx.cluster.name,
        "topology": ctx.cluster.etcd.topology,
        "healthy": view.healthy,
        "leader": f"{view.leader_id:x}" if view.leader_id else None,
        "asked_from": view.runner.name if view.runner else None,
        "tools": view.tools.describe() if view.tools else None,
        "members": [_member_row(ctx, view, m) for m in view.members],
        "alarms": [{"member": f"{a.member_id:x}", "alarm": a.alarm} for a in view.alarms],
        "problems": problems(ctx, view),
    }


def problems(ctx: Context, view: EtcdView) -> list[str]:
    lost = topology.lost_hosts(ctx.cluster, ctx.facts, view.answers)
    return view.problems() + ([lost] if lost else [])


def health_table(document: dict[str, Any]) -> Table:
    table = Table(
        title=f"etcd of {document['cluster']} ({document['topology']}), asked from "
        f"{document['asked_from'] or '-'}",
        title_justify="left",
        box=None,
        header_style="bold",
    )
    for column in ("MEMBER", "ID", "ENDPOINT", "HEALTH", "ROLE", "VERSION", "DB / QUOTA",
                   "IN USE", "REVISION", "RAFT INDEX"):  # fmt: skip
        table.add_column(column)
    for row in document["members"]:
        role = "learner" if row["learner"] else ("leader" if row["leader"] else "follower")
        db = row["db_size"]
        share = f" ({100 * db / row['quota']:.0f}%)" if db is not None and row["quota"] else ""
        health = "[green]healthy[/]" if row["healthy"] else f"[red]{row['error'] or 'UNHEALTHY'}[/]"
        table.add_row(
            row["name"] or "(unstarted)",
            row["id"],
            row["endpoint"] or "-",
            health,
            role,
            row["version"] or "-",
            f"{size(db)} / {size(row['quota'])}{share}",
            size(row["db_size_in_use"]),
            str(row["revision"] or "-"),
            str(row["raft_index"] or "-"),
        )
    return table


def members_document(ctx: Context, view: EtcdView) -> dict[str, Any]:
    """Members against the cluster file (by exact peer URL) and, for stacked etcd, the
    control planes' Node objects. Stale: no host of the cluster file has its peer URL;
    missing: a member host of the cluster file has no member."""
    stacked = not topology.external(ctx.cluster)
    rows, flagged = [], False
    for member in view.members:
        host = host_for(ctx, member)
        flags = []
        if host is None:
            flags.append("stale: no etcd host of the cluster file has its peer URL")
        elif stacked and ctx.nodes and host.name not in ctx.nodes:
            flags.append(f"no Node object for {host.name}")
        if not member.name:
            flags.append("never started (added, not joined)")
        flagged = flagged or bool(flags)
        rows.append(
            {
                "id": member.hex_id,
                "name": member.name,
                "peer_urls": list(member.peer_urls),
                "client_urls": list(member.client_urls),
                "learner": member.learner,
                "host": host.name if host else None,
                "node": (host.name if host and host.name in ctx.nodes else None)
                if stacked
                else None,
                "flags": flags,
            }
        )
    missing = [
        {"host": h.name, "peer_url": peer_url(h.ip)}
        for h in topology.members(ctx.cluster)
        if view.answers and view.member_of(h) is None
    ]
    return {
        "cluster": ctx.cluster.name,
        "answers": view.answers,
        "members": rows,
        "missing": missing,
        "ok": view.answers and not flagged and not missing,
        "problems": [] if view.answers else problems(ctx, view),
    }


def members_table(document: dict[str, Any]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "PEER URLS", "LEARNER", "HOST", "NODE", "FLAGS"):
        table.add_column(column)
    for row in document["members"]:
        table.add_row(
            row["id"],
            row["name"] or "-",
            ", ".join(row["peer_urls"]),
            "yes" if row["learner"] else "no",
            row["host"] or "-",
            row["node"] or "-",
            "[red]" + "; ".join(row["flags"]) + "[/]" if row["flags"] else "ok",
        )
    for row in document["missing"]:
        table.add_row(
            "-", "-", row["peer_url"], "-", row["host"], "-", "[red]missing: no member[/]"
        )
    return table


UNAUTHENTICATED = (
    "backups are not authenticated: without backup.encryptionKeyFile, whoever can write to "
    "the catalogue can change or replace them unnoticed"
)


def catalogue_rows(
    store: Store, manifests: list[Manifest], key: Key | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "name": m.name,
            "created": m.created,
            "age": age(m),
            "origin": m.origin,
            "size": m.snapshot["size"],
            "revision": m.revision,
            "keys": m.keys,
            "etcd_version": m.etcd_version,
            "encrypted": m.encryption["key_id"] if m.encryption else None,
            "state": state(m, store, key),
            "file": m.file["name"],
        }
        for m in manifests
    ]


def catalogue_table(location: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=location, title_justify="left", box=None, header_style="bold")
    for column in ("NAME", "AGE", "ORIGIN", "SIZE", "REVISION", "KEYS", "ENCRYPTED", "STATE"):
        table.add_column(column)
    for row in rows:
        bad = row["state"].startswith(BAD_STATES)
        table.add_row(
            row["name"],
            row["age"],
            row["origin"],
            size(row["size"]),
            str(row["revision"]),
            "?" if row["keys"] is None else str(row["keys"]),
            f"key {row['encrypted']}" if row["encrypted"] else "no",
            f"[red]{row['state']}[/]" if bad else row["state"],
        )
    return table
