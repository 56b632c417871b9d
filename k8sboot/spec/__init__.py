"""The cluster spec: the desired state of one cluster, loaded and validated."""

from k8sboot.spec.checks import Finding, check_local_files
from k8sboot.spec.load import LoadedSpec, load_spec, refuse_directory, spec_from_text
from k8sboot.spec.model import API_VERSION, Cluster, Host

__all__ = [
    "API_VERSION",
    "Cluster",
    "Finding",
    "Host",
    "LoadedSpec",
    "check_local_files",
    "load_spec",
    "refuse_directory",
    "spec_from_text",
]
