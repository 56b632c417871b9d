"""Helpers the commands share: loading the spec and writing results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from k8sboot.spec import LoadedSpec, load_spec


def load(spec_path: Path) -> LoadedSpec:
    """Load and validate the cluster file; warnings go to stderr, errors raise."""
    loaded = load_spec(spec_path)
    for warning in loaded.warnings:
        click.echo(f"warning: {spec_path}: {warning}", err=True)
    return loaded


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
