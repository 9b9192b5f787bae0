"""firewalld zones for virtnet's bridges, through ``firewall-cmd`` (firewalld's own tool).

``<bridge zone='NAME'>`` puts a network's bridge in that zone while the network runs, as
libvirt does; ``virtnet doctor --fix`` puts bridges in the ``trusted`` zone. Changes are
runtime-only: firewalld forgets them on reload, and virtnet removes them when the network
stops. firewall-cmd talks to firewalld over the system D-Bus (``DBUS_SYSTEM_BUS_ADDRESS``).
"""

from __future__ import annotations

import shutil
import subprocess

from virtnet.errors import OperationFailed, Unsupported


def _firewall_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("firewall-cmd")
    if binary is None:
        raise Unsupported("firewall-cmd is not installed (Debian: firewalld)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def running() -> bool:
    return shutil.which("firewall-cmd") is not None and _firewall_cmd("--state").returncode == 0


def join_zone(bridge: str, zone: str) -> None:
    if not running():
        raise Unsupported(f"zone {zone!r} is asked for {bridge}, but firewalld is not running")
    done = _firewall_cmd(f"--zone={zone}", f"--change-interface={bridge}")
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise OperationFailed(
            f"firewalld would not put {bridge} in zone {zone!r}: "
            f"{reason[-1] if reason else 'failed'}"
        )


def leave_zone(bridge: str, zone: str) -> None:
    """Best effort (undo): firewalld may have gone, or forgotten the runtime change."""
    if running():
        _firewall_cmd(f"--zone={zone}", f"--remove-interface={bridge}")
