"""How long a read-only question waits for its answer before what was asked counts as not
answering. One set, so that every observer (a run's probes, the etcd commands, health)
judges a silent component alike. A live component answers in milliseconds; a dead one
costs the whole wait, so these are seconds.

Shared core: imports nothing of k8sboot.
"""

# etcdctl's own defaults, 2 s to connect and 5 s to answer a short question (members,
# status, health, alarms; etcdctl/ctlv3/ctl.go, v3.4 and v3.5). A dead member costs the
# whole answer wait, since etcdctl's dial does not block (no grpc.WithBlock) and the
# request waits for a connection. Every member is asked at once, so no answer at all
# costs this once.
ETCD_DIAL_TIMEOUT = 2
ETCD_ANSWER_TIMEOUT = 5
# A wait for members starting asks again and again: each poll of a member not up yet costs
# its whole answer wait, so a wait asks with the dial's, and notices a member that came up
# seconds sooner (a healthy member answers its health check in milliseconds).
ETCD_POLL_TIMEOUT = ETCD_DIAL_TIMEOUT

# How long a run waits for the API's first answer. An API whose etcd has lost quorum
# answers nothing until a request times out; seconds, not minutes, tell the operator so.
# Not shorter: a virtual IP moving to another control plane takes a few seconds.
API_ANSWER_TIMEOUT = 10

# SSH connect for the read-only commands: a dead host costs one timeout, not a retry loop.
READ_ONLY_CONNECT_TIMEOUT = 5.0
