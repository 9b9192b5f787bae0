"""A bound on what a Linux bridge learns, and static entries for guarded guests.

A guest with ``--no-spoof-check`` may send from any number of MACs, and a bridge learns each
one (seen here: 2 million entries, +259 MiB). Linux 6.8 added a per-bridge limit on learned
entries (``IFLA_BR_FDB_MAX_LEARNED``); pyroute2 0.9 and iproute2 6.1 do not know it yet, so
it goes in virtnet's own request that creates the bridge (:meth:`Rtnl.create_bridge
<virtnet.services.rtnl.Rtnl.create_bridge>`), and is read back here to tell whether this
kernel applied it (a bridge ignores attributes it does not know). Entries a program adds as
*static* do not count towards the limit: guarded ports' MACs are added so, and keep unicast
delivery (no flooding to the attacker) even when the limit is reached.
"""

from __future__ import annotations

import socket
import struct

RTM_GETLINK = 18
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
IFLA_LINKINFO, IFLA_INFO_DATA = 18, 2
IFLA_BR_FDB_N_LEARNED, IFLA_BR_FDB_MAX_LEARNED = 48, 49
NLA_F_NESTED = 0x8000
#: virtnet's default: far above what a bridge of 1,024 ports needs (guarded guests' MACs are
#: static and not counted), far below what exhausts a host's memory.
DEFAULT_MAX_LEARNED = 4096


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    found, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & ~NLA_F_NESTED] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def _request(msg_type: int, flags: int, ifindex: int, attrs: bytes) -> bytes:
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, ifindex, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, 1, 0) + body


def _talk(message: bytes) -> bytes:
    """One request and its answer, on a socket of the calling thread's namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(message)
        return sock.recv(1 << 16)


def _error(reply: bytes) -> int:
    _, msg_type = struct.unpack_from("=IH", reply, 0)
    return -struct.unpack_from("=i", reply, 16)[0] if msg_type == NLMSG_ERROR else 0


def _bridge_u32(ifindex: int, attribute: int) -> int | None:
    reply = _talk(_request(RTM_GETLINK, NLM_F_REQUEST, ifindex, b""))
    if _error(reply):
        return None
    info = _attrs(_attrs(reply[32:]).get(IFLA_LINKINFO, b""))
    value = _attrs(info.get(IFLA_INFO_DATA, b"")).get(attribute)
    return int(struct.unpack("=I", value[:4])[0]) if value else None


def max_learned(ifindex: int) -> int | None:
    """The bridge's limit on learned entries (0: none), or None if this kernel has none."""
    return _bridge_u32(ifindex, IFLA_BR_FDB_MAX_LEARNED)


def learned(ifindex: int) -> int | None:
    """How many entries the bridge has learned (static ones not counted)."""
    return _bridge_u32(ifindex, IFLA_BR_FDB_N_LEARNED)
