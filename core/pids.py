"""Processes by pid: is one still running, and stopping one.

A daemon that forked away from its parent (dnsmasq, ovsdb-server, ovs-vswitchd) is reaped by
PID 1 once it exits; until then /proc still lists it, as a zombie. PID 1 of some sandboxes
reaps slowly (~2 s here), so "its /proc entry is gone" makes every stop wait that long: a
zombie has exited, and counts as stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def terminate(pid: int, timeout: float = 2.0) -> None:
    """SIGTERM, then :func:`wait` for it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    wait(pid, timeout)


def wait(pid: int, timeout: float = 2.0) -> None:
    """Until ``pid`` has exited; SIGKILL if it still runs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    if running(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while running(pid) and time.monotonic() < deadline + timeout:
            time.sleep(0.001)
