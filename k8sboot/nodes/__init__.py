"""Node maintenance: what blocks a drain, etcd quorum arithmetic, removed-host records."""
