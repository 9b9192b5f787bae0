"""Connectivity checks between namespaces: ping, and a TCP connection with the peer's view."""

from __future__ import annotations

import subprocess
import sys

from virtnet.testing.netns import Namespace

_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(float(sys.argv[3]))
print('listening', flush=True)
try:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
    print(peer[0], flush=True)
except socket.timeout:
    print('timeout', flush=True)
"""

_CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(c.recv(100).decode())
except OSError as e:
    print('fail', e); sys.exit(1)
"""


def can_ping(src: Namespace, address: str, count: int = 1, wait: float = 1.0) -> bool:
    """True if ``address`` answers a ping from ``src`` (retried up to 3 times)."""
    for _ in range(3):
        done = src.exec("ping", "-c", str(count), "-W", str(wait), address, check=False)
        if done.returncode == 0:
            return True
    return False


def can_tcp(
    src: Namespace, dst: Namespace, address: str, port: int = 5201, timeout: float = 2.0
) -> str | None:
    """Open a TCP connection from ``src`` to ``address:port`` served in ``dst``.

    Returns the source address the server saw (so NAT can be checked), or None if the
    connection failed.
    """
    server = dst.popen(
        sys.executable,
        "-c",
        _SERVER,
        "::" if ":" in address else "0.0.0.0",
        str(port),
        str(timeout + 1),
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening"
        client = src.exec(
            sys.executable,
            "-c",
            _CLIENT,
            address,
            str(port),
            str(timeout),
            check=False,
            timeout=timeout + 5,
        )
        if client.returncode != 0:
            return None
        seen = client.stdout.strip()
        return seen.removeprefix("::ffff:") or None
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=5)
