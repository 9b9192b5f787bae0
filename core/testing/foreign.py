"""Other programs' firewalls, for real, inside a test namespace: Docker and firewalld.

Each runs in the host namespace of a test with a private directory (data, sockets, logs, its
own system D-Bus for firewalld) and is stopped by pid. dockerd needs the host's cgroup mounts,
which ``ip netns exec`` hides behind a fresh /sys, so it enters only the network namespace
(``nsenter --net``). Nothing here touches the machine's own namespace or firewall.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from virtnet import pids
from virtnet.testing.netns import Namespace


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child: exited, or a zombie its parent has not reaped
            if not pids.running(pid):
                return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


class Docker:
    """dockerd in ``ns``: it sets the namespace's FORWARD policy to DROP, as on a real host."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.dir = Path(tempfile.mkdtemp(prefix="virtnet-docker-", dir="/run"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._plugins_existed = Path("/run/docker/plugins").exists()

    @staticmethod
    def available() -> bool:
        return shutil.which("dockerd") is not None and shutil.which("nsenter") is not None

    def start(self, timeout: float = 60) -> Docker:
        d = self.dir
        with open(d / "log", "wb") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.ns.name}", "dockerd",
                 f"--data-root={d}/data", f"--exec-root={d}/exec", f"--pidfile={d}/pid",
                 f"--host=unix://{d}/docker.sock", "--bridge=none"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "API listen on" not in (d / "log").read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(d / 'log').read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc.pid)
        shutil.rmtree(self.dir, ignore_errors=True)
        if not self._plugins_existed:  # dockerd makes this one directory outside its own
            for path in ("/run/docker/plugins", "/run/docker"):
                try:
                    os.rmdir(path)
                except OSError:
                    break


class Firewalld:
    """firewalld in ``ns`` on a private system bus; ``env`` points firewall-cmd at it."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.dir = Path(tempfile.mkdtemp(prefix="virtnet-firewalld-", dir="/run"))
        self.dir.chmod(0o755)  # the bus drops to its own user
        self.bus = f"unix:path={self.dir}/bus"
        self.pids: list[int] = []
        # firewalld keeps runtime files in /run/firewalld whatever it is told: one it made
        # is removed again; a test does not run beside the machine's own firewalld
        self._runtime = Path("/run/firewalld")
        self._runtime_existed = self._runtime.exists()

    def available(self) -> bool:
        tools = ("firewalld", "firewall-cmd", "dbus-daemon", "nsenter")
        return all(shutil.which(t) for t in tools) and not self._runtime_existed

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus}

    def start(self, timeout: float = 60) -> Firewalld:
        d = self.dir
        shutil.copytree("/etc/firewalld", d / "etc")  # its configuration, never the host's
        out = self.ns.exec("dbus-daemon", "--system", f"--address={self.bus}", "--nopidfile",
                           "--fork", "--print-pid").stdout  # fmt: skip
        self.pids.append(int(out.split()[0]))
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.ns.name}", "firewalld", "--nofork", "--nopid",
             "--system-config", str(d / "etc"), "--log-target", "file",
             "--log-file", str(d / "log")],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.pids.append(proc.pid)
        deadline = time.monotonic() + timeout
        while self.cmd("--state").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"firewalld did not start: {self.log()}")
            time.sleep(0.2)
        return self

    def cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns.name, "firewall-cmd", *args],
                              env=self.env, capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip

    def log(self) -> str:
        try:
            return (self.dir / "log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        for pid in reversed(self.pids):
            _stop(pid)
        shutil.rmtree(self.dir, ignore_errors=True)
        if not self._runtime_existed:
            shutil.rmtree(self._runtime, ignore_errors=True)
