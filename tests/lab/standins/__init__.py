"""Stand-ins for kubeadm, kubelet, kube-apiserver, kube-controller-manager and kube-scheduler.

Lab-only code: installed into lab machines from the .deb packages that tests/lab/debs.py
builds, never imported by k8sboot. Only the Python standard library, PyYAML and
cryptography are used, because lab machines have nothing else (Debian's python3,
python3-yaml, python3-cryptography). See tests/lab/README.md for what differs from upstream.
"""
