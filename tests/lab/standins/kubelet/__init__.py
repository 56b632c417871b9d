"""kubelet stand-in: registers the Node, runs static Pods as processes (the real etcd, the
API server, controller-manager and scheduler stand-ins), reports pods bound to the node."""
