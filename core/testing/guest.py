"""What a guest does on a network, done from a namespace: take a DHCP lease, resolve a name,
and measure a TCP transfer. busybox's ``udhcpc`` and ``nslookup`` stand in for a guest OS."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

from virtnet.testing.netns import Namespace

# busybox ships no udhcpc script in Debian: this one applies the lease like a distro's would.
_UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}"
    ;;
esac
exit 0
"""


def dhcp_lease(ns: Namespace, ifname: str = "eth0", hostname: str | None = None) -> str | None:
    """Ask for a lease on ``ifname`` in ``ns`` and apply it; returns the address, or None."""
    fd, script = tempfile.mkstemp(prefix="vt-udhcpc-", suffix=".sh")
    try:
        os.write(fd, _UDHCPC_SCRIPT.encode())
        os.close(fd)
        os.chmod(script, 0o700)
        args = ["busybox", "udhcpc", "-i", ifname, "-n", "-q", "-t", "6", "-T", "1", "-s", script]
        if hostname:
            args += ["-x", f"hostname:{hostname}"]
        done = ns.exec(*args, check=False, timeout=30)
    finally:
        os.unlink(script)
    found = re.search(r"lease of (\S+) obtained", done.stdout + done.stderr)
    return found.group(1) if found else None


def release_lease(ns: Namespace, ifname: str = "eth0", timeout: float = 20.0) -> bool:
    """Take a lease, then give it back (DHCPRELEASE, as a guest shutting down does); True if
    the client said it released it. busybox's ``-R`` does not release in ``-q`` mode, so
    the client runs in the foreground and gets SIGUSR2."""
    proc = ns.popen(
        "busybox", "udhcpc", "-f", "-i", ifname, "-s", "/bin/true", "-t", "6", "-T", "1",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "obtained" in line:
                proc.send_signal(signal.SIGUSR2)
            if "released" in line:
                return True
        return False
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()


def resolve(ns: Namespace, name: str, server: str, rtype: str = "a") -> list[str]:
    """Addresses (or TXT strings) ``server`` gives for ``name``, asked from ``ns``."""
    done = ns.exec("busybox", "nslookup", f"-type={rtype}", name, server, check=False)
    out = done.stdout.split("\n\n", 1)[-1] if "\n\n" in done.stdout else done.stdout
    if rtype == "txt":
        return re.findall(r'text = "([^"]*)"', out)
    return re.findall(r"Address: (\S+)", out)


_SINK = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(20)
print("listening", flush=True)
c, _ = s.accept(); total = 0; start = None
while True:
    data = c.recv(65536)
    if not data:
        break
    if start is None:
        start = time.monotonic()
    total += len(data)
print(total / max(time.monotonic() - (start or time.monotonic()), 1e-6), flush=True)
"""

_SOURCE = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
chunk = b"x" * 65536; end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    c.sendall(chunk)
c.close()
"""


def tcp_throughput(
    src: Namespace, dst: Namespace, address: str, seconds: float = 3.0, port: int = 5301
) -> float:
    """Bytes per second a TCP stream from ``src`` to ``address`` (served in ``dst``) carries."""
    sink = dst.popen(sys.executable, "-c", _SINK, str(port), stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None
        sink.stdout.readline()
        src.exec(
            sys.executable, "-c", _SOURCE, address, str(port), str(seconds), timeout=seconds + 30
        )
        return float(sink.stdout.readline().strip() or 0)
    finally:
        if sink.poll() is None:
            sink.kill()
        sink.wait(timeout=5)
