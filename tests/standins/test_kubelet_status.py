"""When the kubelet stand-in posts its Node's status, as upstream's kubelet does
(kubernetes v1.33.0 pkg/kubelet/kubelet.go: syncNodeStatus every nodeStatusUpdateFrequency,
10 s by default, and fastStatusUpdateOnce; pkg/kubelet/kubelet_node_status.go:
fastNodeStatusUpdate, added in v1.27 by kubernetes#112618): for its first
nodeReadyGracePeriod (120 s) after it starts, a kubelet whose node is not yet Ready checks
whether it would be (container runtime up, CNI configured) and posts Ready at once. A new
node turns Ready as soon as its CNI configuration is written, not up to 10 s later."""

from __future__ import annotations

import pytest

from tests.lab.standins.kubelet.main import NODE_READY_GRACE, STATUS_EVERY, status_due

STARTED = 1000.0


@pytest.mark.parametrize(
    ("since_start", "since_status", "posted_ready", "ready_now", "due"),
    [
        # The periodic status, whatever else holds.
        (300.0, STATUS_EVERY, True, True, True),
        (300.0, STATUS_EVERY, False, False, True),
        # Between ticks, a node just become Ready is posted at once, early on...
        (30.0, 1.0, False, True, True),
        # ...but not when it is not Ready yet, or was posted Ready already,
        (30.0, 1.0, False, False, False),
        (30.0, 1.0, True, True, False),
        # ...nor after nodeReadyGracePeriod: then only the periodic status.
        (NODE_READY_GRACE, 1.0, False, True, False),
    ],
)
def test_status_is_posted_every_tick_and_at_once_when_a_new_node_turns_ready(
    since_start: float, since_status: float, posted_ready: bool, ready_now: bool, due: bool
) -> None:
    now = STARTED + since_start
    assert status_due(now, now - since_status, STARTED, posted_ready, ready_now) is due
