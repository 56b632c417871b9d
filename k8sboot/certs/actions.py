"""Actions of certificate renewal."""

from __future__ import annotations

from dataclasses import dataclass

from k8sboot.actions import Action


@dataclass(frozen=True)
class RenewCertificates(Action):
    """`kubeadm certs renew all` on one control plane, then its static pods restarted and
    its API server and etcd member found healthy before anything else happens."""

    host: str

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host,)

    def describe(self) -> str:
        return (
            "kubeadm certs renew all; restart the API server, controller-manager, scheduler "
            "and etcd (their manifests moved out and back); wait until healthy"
        )
