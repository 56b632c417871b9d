"""k8sboot: bring up and maintain kubeadm Kubernetes clusters over SSH."""

__version__ = "0.1.0"
