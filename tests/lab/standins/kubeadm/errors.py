"""kubeadm's error shapes: a message on stderr and exit status 1 (phase errors are prefixed
with `error execution phase <phase>:`)."""

from __future__ import annotations


class KubeadmError(Exception):
    exit_code = 1


class PhaseError(KubeadmError):
    def __init__(self, phase: str, message: str):
        super().__init__(f"error execution phase {phase}: {message}")
        self.phase = phase


class PreflightError(KubeadmError):
    pass
