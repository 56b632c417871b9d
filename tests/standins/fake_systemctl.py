"""`systemctl` for the kubelet of one test node (a directory standing in for a machine's
root). kubeadm calls it through K8SBOOT_STANDIN_SYSTEMCTL in host tests.

    fake_systemctl.py ROOT restart|start|stop|is-active kubelet
    fake_systemctl.py ROOT _supervise      (internal: Restart=always, RestartSec=1)

The kubelet runs with the unit's command line: the drop-in's fixed flags plus
KUBELET_KUBEADM_ARGS from ROOT/var/lib/kubelet/kubeadm-flags.env.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

LAB = Path(__file__).resolve().parents[1] / "lab"


def kubelet_argv(root: Path) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "standins.kubelet",
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubeconfig=/etc/kubernetes/kubelet.conf",
        "--config=/var/lib/kubelet/config.yaml",
    ]
    env_file = root / "var/lib/kubelet/kubeadm-flags.env"
    if env_file.exists():
        line = env_file.read_text().strip()
        if line.startswith("KUBELET_KUBEADM_ARGS="):
            argv += shlex.split(shlex.split(line.split("=", 1)[1])[0])
    return argv


def supervise(root: Path) -> None:
    state = {"stopping": False, "child": None}

    def stop(*_):
        # Only signal here: waiting on the child from a signal handler would deadlock on
        # Popen's wait lock while the main loop is inside child.wait().
        state["stopping"] = True
        child = state["child"]
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    path = os.pathsep.join(filter(None, [str(LAB), os.environ.get("PYTHONPATH", "")]))
    env = dict(os.environ, K8SBOOT_STANDIN_ROOT=str(root), PYTHONPATH=path)
    log = open(root / "kubelet.log", "ab")  # noqa: SIM115 - the children's stdout
    while not state["stopping"]:
        state["child"] = subprocess.Popen(
            kubelet_argv(root), cwd=str(LAB), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        state["child"].wait()
        if not state["stopping"]:
            time.sleep(1)


def pid_file(root: Path) -> Path:
    return root / "run" / "kubelet-supervisor.pid"


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may never be reaped here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running(root: Path) -> int | None:
    try:
        pid = int(pid_file(root).read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def stop(root: Path) -> None:
    pid = running(root)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(400):
            if not alive(pid):
                break
            time.sleep(0.1)
    pid_file(root).unlink(missing_ok=True)


def start(root: Path) -> None:
    if running(root):
        return
    pid_file(root).parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen(
        [sys.executable, __file__, str(root), "_supervise"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file(root).write_text(str(p.pid))


def main() -> int:
    root, action = Path(sys.argv[1]), sys.argv[2]
    if action == "_supervise":
        supervise(root)
        return 0
    if action in ("restart", "start"):
        if action == "restart":
            stop(root)
        start(root)
    elif action == "stop":
        stop(root)
    elif action == "is-active":
        return 0 if running(root) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
