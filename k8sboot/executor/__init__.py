"""The executor (see core.py); importing this package registers every handler."""

from k8sboot.executor import cluster, files, kubeadm  # noqa: F401  (they register handlers)
from k8sboot.executor.core import Executor, Outcome, handles

__all__ = ["Executor", "Outcome", "handles"]
