"""A minimal DHCPv6 client (RFC 8415: Solicit, Advertise, Request, Reply; Release), because
busybox has none. Runs inside a guest namespace as ``python -m virtnet.testing.dhcpv6``; the
DUID is a parameter, so a test can also play a guest that forges another's.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys

from virtnet.testing.netns import Namespace

SOLICIT, ADVERTISE, REQUEST, REPLY, RELEASE = 1, 2, 3, 7, 8
CLIENTID, SERVERID, IA_NA, IAADDR, ELAPSED = 1, 2, 3, 5, 8


def _option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def _options(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        code, length = struct.unpack_from("!HH", data, offset)
        found.setdefault(code, data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return found


def _message(kind: int, xid: bytes, duid: bytes, iaid: int, extra: bytes = b"") -> bytes:
    ia = _option(IA_NA, struct.pack("!III", iaid, 0, 0) + extra)
    return bytes([kind]) + xid + _option(CLIENTID, duid) + _option(ELAPSED, b"\0\0") + ia


def _client_socket(ifname: str) -> socket.socket:
    """UDP port 546 on ``ifname``, where servers answer."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    sock.bind(("::", 546))
    sock.settimeout(2.0)
    return sock


def lease(ifname: str, duid: bytes, iaid: int = 1, release: bool = False) -> str | None:
    """Take (or with ``release``, take and give back) an address on ``ifname``."""
    server = ("ff02::1:2", 547, 0, socket.if_nametoindex(ifname))
    with _client_socket(ifname) as sock:
        xid = os.urandom(3)
        for _ in range(3):
            sock.sendto(_message(SOLICIT, xid, duid, iaid), server)
            try:
                advert = _options(sock.recv(2048)[4:])
                break
            except TimeoutError:
                continue
        else:
            return None
        ia = _options(advert.get(IA_NA, b"")[12:])
        if IAADDR not in ia or SERVERID not in advert:
            return None
        address = ipaddress.IPv6Address(ia[IAADDR][:16])
        iaaddr = _option(IAADDR, ia[IAADDR][:16] + b"\0" * 8)
        xid = os.urandom(3)
        request = _message(REQUEST, xid, duid, iaid, iaaddr) + _option(SERVERID, advert[SERVERID])
        sock.sendto(request, server)
        reply = _options(sock.recv(2048)[4:])
        if IAADDR not in _options(reply.get(IA_NA, b"")[12:]):
            return None
        if release:
            message = _message(RELEASE, os.urandom(3), duid, iaid, iaaddr)
            sock.sendto(message + _option(SERVERID, advert[SERVERID]), server)
    return str(address)


def forge_release(ifname: str, duid: bytes, address: str, iaid: int = 1) -> None:
    """Release ``address`` in the name of the client with ``duid``: learn the server's id
    with a Solicit of our own, then send its Release."""
    server = ("ff02::1:2", 547, 0, socket.if_nametoindex(ifname))
    with _client_socket(ifname) as sock:
        sock.sendto(_message(SOLICIT, os.urandom(3), os.urandom(10), 7), server)
        server_id = _options(sock.recv(2048)[4:])[SERVERID]
        iaaddr = _option(IAADDR, ipaddress.IPv6Address(address).packed + b"\0" * 8)
        release = _message(RELEASE, os.urandom(3), duid, iaid, iaaddr)
        for _ in range(3):
            sock.sendto(release + _option(SERVERID, server_id), server)


def take(ns: Namespace, duid: bytes, ifname: str = "eth0", iaid: int = 1) -> str | None:
    """Run :func:`lease` in ``ns``; the leased address, or None."""
    done = ns.exec(sys.executable, "-m", "virtnet.testing.dhcpv6", ifname, duid.hex(),
                   str(iaid), check=False)  # fmt: skip
    out = done.stdout.strip()
    return out or None


def duid_ll(mac: str) -> bytes:
    """A DUID-LL (type 3, Ethernet) made from ``mac``: what many clients use."""
    return struct.pack("!HH", 3, 1) + bytes.fromhex(mac.replace(":", ""))


if __name__ == "__main__":
    if sys.argv[1] == "release":
        forge_release(sys.argv[2], bytes.fromhex(sys.argv[3]), sys.argv[4])
    else:
        got = lease(sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]))
        print(got or "")
