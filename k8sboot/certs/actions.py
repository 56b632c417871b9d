"""Actions of certificate renewal."""

from __future__ import annotations

from dataclasses import dataclass

from k8sboot.actions import OnHost


@dataclass(frozen=True)
class RenewCertificates(OnHost):
    """`kubeadm certs renew all` on one control plane, then its static pods restarted and
    its API server and etcd member found healthy before anything else happens."""

    def describe(self) -> str:
        return (
            "kubeadm certs renew all; restart the API server, controller-manager, scheduler "
            "and etcd (their manifests moved out and back); wait until healthy"
        )
