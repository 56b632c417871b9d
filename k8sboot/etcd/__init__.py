"""etcd: talk to a cluster's etcd with etcdctl on one of its hosts, over SSH."""
