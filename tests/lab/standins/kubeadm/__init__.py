"""kubeadm stand-in: init, join, reset, token, certs, init phase upload-certs, version."""
