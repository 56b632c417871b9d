"""kube-apiserver stand-in: HTTPS, client-certificate and bootstrap-token authentication,
RBAC, objects stored as JSON in the real etcd under /registry/..."""
