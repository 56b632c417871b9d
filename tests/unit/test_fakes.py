"""The planning context's hosts answer nothing unless a test scripts them: a step that
runs a command unexpectedly fails the test, naming the command, even past the code's own
`except Exception`."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sboot.nodes.drain import DrainOptions
from k8sboot.workflows import node_drain

from .conftest import load_data
from .factsdata import context, converged_host, ready
from .fakes import UnexpectedCommand


def test_an_unscripted_command_fails_naming_it(base: dict, tmp_path: Path) -> None:
    cluster = load_data(base).cluster
    hosts = {h.name: converged_host(cluster, h.name) for h in cluster.hosts}
    ctx = context(cluster, hosts, tmp_path, ready("cp1", "w1"))
    with pytest.raises(UnexpectedCommand, match=r"^unexpected command on cp1: kubectl .* get pods"):
        node_drain("w1", DrainOptions()).steps[0].plan(ctx)
    with pytest.raises(UnexpectedCommand, match="on w1: true"):  # not one host's failure
        ctx.view.each(["w1"], lambda host: host.ask("true"))
