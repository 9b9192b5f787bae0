"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) inside a test's namespace.

Its own directory holds the database, sockets, pid files and logs; both daemons are stopped
by pid. Without the openvswitch kernel module, bridges must use the userspace datapath
(``datapath_type=netdev``); the OVS backend chooses that itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from virtnet import pids
from virtnet.testing.netns import Namespace


class OvsServer:
    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.dir = Path(tempfile.mkdtemp(prefix="virtnet-ovs-", dir="/run"))
        self.db = self.dir / "db.sock"

    @property
    def remote(self) -> str:
        return f"unix:{self.db}"

    def _run(self, *args: str) -> None:
        env = {**os.environ, "OVS_RUNDIR": str(self.dir), "OVS_DBDIR": str(self.dir),
               "OVS_LOGDIR": str(self.dir)}  # fmt: skip
        subprocess.run(
            ["ip", "netns", "exec", self.ns.name, *args],
            env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=30,
        )  # fmt: skip

    def start(self) -> OvsServer:
        d = self.dir
        self._run("ovsdb-tool", "create", str(d / "conf.db"),
                  "/usr/share/openvswitch/vswitch.ovsschema")  # fmt: skip
        self._run("ovsdb-server", f"--remote=punix:{self.db}", f"--pidfile={d}/ovsdb.pid",
                  "--detach", f"--log-file={d}/ovsdb.log", str(d / "conf.db"))  # fmt: skip
        self._run("ovs-vsctl", f"--db={self.remote}", "--no-wait", "init")
        self._run("ovs-vswitchd", self.remote, f"--pidfile={d}/vswitchd.pid", "--detach",
                  f"--log-file={d}/vswitchd.log")  # fmt: skip
        return self

    def vsctl(self, *args: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns.name, "ovs-vsctl", f"--db={self.remote}", *args],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return done.stdout

    def ofctl(self, command: str, bridge: str, *args: str) -> str:
        done = subprocess.run(
            ["ovs-ofctl", command, f"unix:{self.dir / f'{bridge}.mgmt'}", *args],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return done.stdout

    def stop(self) -> None:
        for name in ("vswitchd.pid", "ovsdb.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.terminate(int((self.dir / name).read_text()))
        shutil.rmtree(self.dir, ignore_errors=True)


def reap_stale_dirs(min_age: float = 60.0) -> list[Path]:
    """Directories of private OVS servers whose daemons all exited (a killed test run's),
    older than ``min_age`` seconds (one being started right now has no pid files yet)."""
    removed = []
    for directory in Path("/run").glob("virtnet-ovs-*"):
        try:
            if time.time() - directory.stat().st_mtime < min_age:
                continue
            running = [
                pid
                for name in ("ovsdb.pid", "vswitchd.pid")
                if (directory / name).exists()
                and pids.running(pid := int((directory / name).read_text()))
            ]
        except (OSError, ValueError):
            continue
        if not running:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed
