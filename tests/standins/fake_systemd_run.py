"""`systemd-run` of a transient service and `systemctl stop` of it, on a host without
systemd, as far as k8sboot's throw-away etcd (`etcd verify`) uses them.

    fake_systemd_run.py STATE run --quiet --collect --unit=UNIT -p NAME=VALUE... COMMAND...
    fake_systemd_run.py STATE stop UNIT

`run` starts COMMAND as systemd starts a service (systemd.exec(5), systemd.service(5)):
in WorkingDirectory (default /), with UMask (default 0022), NOTIFY_SOCKET set for
Type=notify, and returns once the service reported READY=1; it fails when the service exits
first or TimeoutStartSec passes. A property it does not emulate is an error, so a test
notices a change it would otherwise pass over. The service's pid and output go to STATE.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fake_systemctl import alive

KNOWN = {"Type", "TimeoutStartSec", "WorkingDirectory", "UMask"}


def run(state: Path, args: list[str]) -> int:
    unit, properties = "", {}
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ("--quiet", "--collect"):
            continue
        if option.startswith("--unit="):
            unit = option.removeprefix("--unit=")
        elif option == "-p":
            name, _, value = args.pop(0).partition("=")
            if name not in KNOWN:
                print(f"fake systemd-run: property {name} is not emulated", file=sys.stderr)
                return 1
            properties[name] = value
        else:
            print(f"fake systemd-run: option {option} is not emulated", file=sys.stderr)
            return 1
    if not unit or properties.get("Type") != "notify":
        print("fake systemd-run: needs --unit and -p Type=notify", file=sys.stderr)
        return 1
    directory = tempfile.mkdtemp(prefix="sd")  # short: a socket path has 107 bytes at most
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(f"{directory}/notify")
    log = open(state / f"{unit}.log", "ab")  # noqa: SIM115 - the service's output
    umask = int(properties.get("UMask", "0022"), 8)
    service = subprocess.Popen(
        args,
        cwd=properties.get("WorkingDirectory", "/"),
        env=dict(os.environ, NOTIFY_SOCKET=f"{directory}/notify"),
        preexec_fn=lambda: os.umask(umask),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    (state / f"{unit}.pid").write_text(str(service.pid))
    deadline = time.monotonic() + float(properties.get("TimeoutStartSec", "90"))
    notify.settimeout(0.2)
    try:
        while time.monotonic() < deadline and service.poll() is None:
            try:
                if b"READY=1" in notify.recv(4096).split(b"\n"):
                    return 0
            except TimeoutError:
                continue
    finally:
        notify.close()
        os.unlink(f"{directory}/notify")
        os.rmdir(directory)
    print(f"Job for {unit}.service failed (see {state / unit}.log)", file=sys.stderr)
    stop(state, unit)
    return 1


def stop(state: Path, unit: str) -> int:
    try:
        pid = int((state / f"{unit}.pid").read_text())
    except (OSError, ValueError):
        return 5  # systemctl: no such unit
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if not alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    return 0


def main() -> int:
    state, action, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if action == "run":
        return run(state, args)
    if action == "stop" and len(args) == 1:
        return stop(state, args[0])
    print(f"fake systemd: {action} {' '.join(args)} is not emulated", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
