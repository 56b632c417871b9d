"""klog-shaped log lines on stderr (journald collects them under the kubelet unit)."""

from __future__ import annotations

import datetime as dt
import os
import sys


def _line(level: str, msg: str) -> None:
    t = dt.datetime.now()
    sys.stderr.write(f"{level}{t:%m%d %H:%M:%S.%f} {os.getpid():7d} kubelet.go:0] {msg}\n")
    sys.stderr.flush()


def info(msg: str) -> None:
    _line("I", msg)


def warn(msg: str) -> None:
    _line("W", msg)


def error(msg: str) -> None:
    _line("E", msg)
