"""Shared test configuration: the lab fixtures (tests/lab/plugin.py) for every test directory."""

import sys
from pathlib import Path

# `tests.lab` must be importable however pytest was started (editable install or not).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

pytest_plugins = ["tests.lab.plugin"]
