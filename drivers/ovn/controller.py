"""Is this host's ovn-controller running? A registered chassis is not enough: a killed
ovn-controller leaves its Chassis row in the southbound database, and a port plugged then
is never bound. Its pid file must name a live process that answers on its control socket
(what ``ovn-appctl -t ovn-controller version`` asks)."""

from __future__ import annotations

from pathlib import Path

from virtnet import pids
from virtnet.errors import VirtnetError
from virtnet.services.ovsdb_rpc import OvsdbRpc

CONTROL_TIMEOUT = 2.0


def controller_problem(rundir: str, ask: bool = True) -> str | None:
    """None if ovn-controller runs here; else why not, in a line. ``ask=False`` only looks
    at the pid file and the process (no round trip: what a plug can afford up front)."""
    pidfile = Path(rundir) / "ovn-controller.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except FileNotFoundError:
        return f"ovn-controller is not running (no {pidfile}; set VIRTNET_OVN_RUNDIR?)"
    except (OSError, ValueError) as exc:
        return f"ovn-controller's pid file {pidfile} is unreadable: {exc}"
    if not pids.running(pid):
        return f"ovn-controller is not running (its pid {pid}, in {pidfile}, is gone)"
    if ask:
        control = Path(rundir) / f"ovn-controller.{pid}.ctl"
        try:
            with OvsdbRpc(f"unix:{control}", CONTROL_TIMEOUT, "ovn-controller") as ctl:
                ctl.call("version", [])
        except VirtnetError as exc:
            return f"ovn-controller (pid {pid}) does not answer: {exc}"
    return None
