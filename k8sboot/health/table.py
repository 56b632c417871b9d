"""Verdicts as a table for people (rich) or a JSON document for machines."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from k8sboot.health.verdicts import Verdict, healthy
from k8sboot.report import MARK


def summary(verdicts: list[Verdict]) -> dict[str, int]:
    counts = Counter(v.status for v in verdicts)
    return {status: counts.get(status, 0) for status in ("ok", "warn", "fail", "skip")}


def document(verdicts: list[Verdict], **extra: Any) -> dict[str, Any]:
    return {
        "ok": healthy(verdicts),
        "healthy": healthy(verdicts),
        **extra,
        "summary": summary(verdicts),
        "checks": [v.as_dict() for v in verdicts],
    }


def print_table(verdicts: list[Verdict], footer: str = "", headline: str | None = None) -> None:
    # Piped into a file or a pager, rows stay whole rather than wrapped at 80 columns.
    wide = None if sys.stdout.isatty() else 200
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False, width=wide)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("CHECK", "TARGET", "STATUS", "DETAIL"):
        table.add_column(column, overflow="fold" if column == "DETAIL" else None)
    for v in verdicts:
        table.add_row(escape(v.check), escape(v.target), MARK[v.status], escape(v.detail))
    with console.capture() as captured:
        console.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    counts = summary(verdicts)
    word = headline or ("[green]healthy[/]" if healthy(verdicts) else "[red]UNHEALTHY[/]")
    parts = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(f"{word}: {parts}{footer}")
