"""kubeadm-managed certificates: their expiry (read with kubeadm itself) and renewal."""
