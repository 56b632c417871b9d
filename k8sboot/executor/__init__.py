"""The executor (see core.py); importing this package registers every handler."""

from k8sboot.etcd import install  # noqa: F401  (registers its handler)
from k8sboot.executor import (  # noqa: F401  (they register handlers)
    certs,
    cluster,
    etcd,
    files,
    kubeadm,
    nodes,
)
from k8sboot.executor.core import Executor, Outcome, handles

__all__ = ["Executor", "Outcome", "handles"]
