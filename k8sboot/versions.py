"""Kubernetes versions k8sboot supports, and what each one implies.

A minor is listed here only once its kubeadm, kubelet and kube-proxy config formats were
checked field by field against the upstream API types (tests/unit/apifields).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUPPORTED_MINORS = (30, 31, 32, 33)
DEFAULT_VERSION = "1.33.1"

_VERSION = re.compile(r"^v?1\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class KubeVersion:
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        """Parse '1.33.1' or 'v1.33.1'; raise ValueError naming the supported range."""
        match = _VERSION.match(text.strip())
        if not match:
            raise ValueError(f"'{text}' is not a Kubernetes version like {DEFAULT_VERSION}")
        version = cls(int(match[1]), int(match[2]))
        if version.minor not in SUPPORTED_MINORS:
            raise ValueError(f"Kubernetes {text} is not supported (supported: {supported_range()})")
        return version

    def __str__(self) -> str:
        return f"1.{self.minor}.{self.patch}"

    @property
    def minor_str(self) -> str:
        return f"1.{self.minor}"

    @property
    def kubeadm_api(self) -> str:
        """kubeadm config API: v1beta4 arrived in 1.31; 1.30 only has v1beta3."""
        return "v1beta4" if self.minor >= 31 else "v1beta3"

    @property
    def pause_image(self) -> str:
        """The sandbox image this release's kubeadm expects (`kubeadm config images list`)."""
        return "registry.k8s.io/pause:3.9" if self.minor <= 30 else "registry.k8s.io/pause:3.10"


def supported_range() -> str:
    return f"1.{SUPPORTED_MINORS[0]} to 1.{SUPPORTED_MINORS[-1]}"
