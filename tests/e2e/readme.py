"""The README's quickstarts as the shell lines a newcomer pastes, and a way to run them
against the lab (issue 19: each quickstart is tested as written)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import KUBECTL

README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart(heading: str) -> list[str]:
    """The commands of the first ```sh block under the `## <heading>` section: comments
    dropped, continued lines joined."""
    text = README.read_text()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", "", block)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def tools(directory: Path) -> str:
    """A PATH on which `k8sboot` is this checkout's and `kubectl` the lab's real one."""
    directory.mkdir(exist_ok=True)
    k8sboot = directory / "k8sboot"
    k8sboot.write_text(f'#!/bin/sh\nexec {sys.executable} -m k8sboot "$@"\n')
    k8sboot.chmod(0o755)
    kubectl = directory / "kubectl"
    if not kubectl.exists():
        kubectl.symlink_to(KUBECTL if os.path.isabs(KUBECTL) else f"/usr/bin/{KUBECTL}")
    return f"{directory}:{os.environ['PATH']}"


def paste(line: str, cwd: Path, env: dict[str, str], timeout: float = 1200) -> str:
    """One pasted line, run by bash as a terminal would; its output (it must succeed)."""
    done = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"`{line}` exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout
