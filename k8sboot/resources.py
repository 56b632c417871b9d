"""Where the templates and playbooks shipped with k8sboot live.

From a source checkout they sit at the top of the repository; an installed wheel carries
them inside the package under _data/ (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"k8sboot is installed without its {name}/ directory")
