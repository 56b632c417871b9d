"""`k8sboot health` (and `certs check`): read-only looks at the cluster, one verdict per
check, gathered in parallel across hosts."""
