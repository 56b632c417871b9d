"""Test modules share helpers through helper modules (factsdata, builders, fakes), never by
importing another test module: that runs the other module's tests' imports and fixtures
in this one, and ties what a test means to a file it does not live in."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _imported_test_modules(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        if any(part.startswith("test_") for name in names for part in name.split(".")):
            found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}")
    return found


def test_no_test_module_imports_another() -> None:
    offending = [
        where for path in sorted(TESTS.rglob("test_*.py")) for where in _imported_test_modules(path)
    ]
    assert offending == [], "move what these share into a helper module: " + ", ".join(offending)
