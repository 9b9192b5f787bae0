"""Raw rtnetlink for the per-port hot path: a link's facts, changes to a link, an FDB entry.

pyroute2 spends ~1 ms of Python (an asyncio loop turn, generic message encoding) on each
request the kernel answers in tens of microseconds; a plug makes three or four of them, an
unplug three. These few requests are built and answered here by hand, in the style of
:mod:`~virtnet.services.nft_elements`; everything else stays with pyroute2.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK, RTM_NEWNEIGH = 16, 17, 18, 19, 28
RTM_GETROUTE, RTM_F_FIB_MATCH, RTA_DST = 26, 0x2000, 1
RTM_NEWROUTE, RTA_GATEWAY, RT_TABLE_MAIN, RTN_UNICAST = 24, 5, 254, 1
RTM_NEWADDR, IFA_ADDRESS, IFA_LOCAL, IFA_F_NODAD = 20, 1, 2, 0x02
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 0x2, 0x3
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_GROUP, IFLA_EXT_MASK = 18, 20, 27, 29
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE, IFLA_BR_FDB_MAX_LEARNED = 1, 5, 49
NLA_F_NESTED = 0x8000
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
AF_BRIDGE, NUD_NOARP, NTF_MASTER, NDA_LLADDR = 7, 0x40, 0x04, 2
_HEADER = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type


class RtnlError(OSError):
    """The kernel refused a request; ``code`` is the errno, as pyroute2's errors have it."""

    @property
    def code(self) -> int:
        return int(self.errno or 0)


@dataclass(frozen=True)
class LinkFacts:
    """What undo and retirement need to know of a link, from one ``RTM_GETLINK``."""

    index: int
    up: bool
    kind: str | None
    alias: str | None
    master: int
    group: int
    name: str = ""
    peer: int = 0  # IFLA_LINK: a veth's other end (its index in the other end's namespace)
    carrier: bool = False  # IFF_LOWER_UP: a tap has it while a process holds it open


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _string(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _link_attrs(
    ifname: str | None,
    mac: str | None,
    mtu: int | None,
    alias: str | None = None,
    group: int | None = None,
    master: int | None = None,
) -> bytes:
    """The attributes of a link request, for those given (None: not in the request)."""
    attrs = b""
    if ifname is not None:
        attrs += _string(IFLA_IFNAME, ifname)
    if mac is not None:
        attrs += _attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    if mtu is not None:
        attrs += _u32(IFLA_MTU, mtu)
    if alias is not None:
        attrs += _string(IFLA_IFALIAS, alias)
    if group is not None:
        attrs += _u32(IFLA_GROUP, group)
    if master is not None:
        attrs += _u32(IFLA_MASTER, master)
    return attrs


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def _group(data: bytes, offset: int, length: int) -> int:
    """The link group of one ``RTM_NEWLINK`` message, without decoding the rest: the kernel
    puts ``IFLA_GROUP`` among a message's first ten attributes, so a dump filtered by group
    costs a few microseconds per link instead of a full decoding's ~18."""
    for attr, value in _attrs(data, offset + 16 + _IFINFO.size, offset + length):
        if attr == IFLA_GROUP:
            return int.from_bytes(value[:4], sys.byteorder)
    return 0


def _facts(data: bytes, offset: int, length: int) -> LinkFacts:
    """The facts of one ``RTM_NEWLINK`` message at ``offset`` in ``data``."""
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset + 16)
    name = ""
    kind = alias = None
    master = group = peer = 0
    for attr, value in _attrs(data, offset + 16 + _IFINFO.size, offset + length):
        if attr == IFLA_LINK:
            (peer,) = struct.unpack("=I", value[:4])
        elif attr == IFLA_IFNAME:
            name = _text(value)
        elif attr == IFLA_IFALIAS:
            alias = _text(value) or None
        elif attr == IFLA_MASTER:
            (master,) = struct.unpack("=I", value[:4])
        elif attr == IFLA_GROUP:
            (group,) = struct.unpack("=I", value[:4])
        elif attr == IFLA_LINKINFO:
            for sub, subvalue in _attrs(value, 0, len(value)):
                if sub == IFLA_INFO_KIND:
                    kind = _text(subvalue)
    return LinkFacts(index, bool(flags & IFF_UP), kind, alias, master, group, name, peer,
                     bool(flags & IFF_LOWER_UP))  # fmt: skip


class Rtnl:
    """A NETLINK_ROUTE socket in the creating thread's namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._seq = itertools.count(int.from_bytes(os.urandom(2), "big") << 8)

    def close(self) -> None:
        self.sock.close()

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        ifname: str | None = None,
        master: int | None = None,
        group: int | None = None,
        alias: str | None = None,
        mac: str | None = None,
        mtu: int | None = None,
    ) -> None:
        """Change link ``index`` in one request (``master=0``: off its bridge)."""
        attrs = _link_attrs(ifname, mac, mtu, alias, group, master)
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        self._request(RTM_SETLINK, 0, _IFINFO.pack(0, 0, index, flags, change) + attrs)

    def create_bridge(
        self,
        ifname: str,
        *,
        stp: bool,
        forward_delay: int,
        max_learned: int,
        mac: str | None = None,
        mtu: int | None = None,
        group: int | None = None,
    ) -> None:
        """A Linux bridge in one request, its STP settings and its bound on learned MACs
        (``IFLA_BR_FDB_MAX_LEARNED``, Linux 6.8; older kernels ignore it) included.
        ``forward_delay`` in centiseconds, as the kernel counts."""
        data = _u32(IFLA_BR_FORWARD_DELAY, forward_delay) + _u32(IFLA_BR_STP_STATE, int(stp))
        data += _u32(IFLA_BR_FDB_MAX_LEARNED, max_learned)
        linkinfo = _string(IFLA_INFO_KIND, "bridge") + _attr(IFLA_INFO_DATA | NLA_F_NESTED, data)
        attrs = _link_attrs(ifname, mac, mtu, None, group)
        attrs += _attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _IFINFO.pack(0, 0, 0, 0, 0) + attrs)

    def create_veth(
        self,
        ifname: str,
        *,
        peer_ifname: str,
        peer_netns_fd: int | None = None,
        peer_mac: str | None = None,
        master: int | None = None,
        mtu: int | None = None,
        group: int | None = None,
    ) -> None:
        """A veth pair in one request: ``ifname`` here (down), the peer in the namespace
        ``peer_netns_fd`` refers to, with its final name and MAC, and up.

        Up at birth, without a request from inside that namespace (a thread that enters it:
        ~0.3 ms): the guest's end is the pair's *first* device, made in its namespace, and
        ours the peer, made here. The kernel opens the first device after both exist, while
        a peer brought up at birth would have no other end yet (ENOTCONN). ``master`` only
        with both ends here: a peer's IFLA_MASTER is not honoured at creation (the caller
        enslaves ours afterwards). Without ``peer_netns_fd`` both ends are here, down."""
        if peer_netns_fd is None:
            first = _link_attrs(ifname, None, mtu, None, group, master)
            second = _link_attrs(peer_ifname, peer_mac, mtu)
            flags = 0
        else:
            if master is not None:
                raise ValueError("a veth whose peer is in another namespace is enslaved after")
            first = _link_attrs(peer_ifname, peer_mac, mtu) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
            second = _link_attrs(ifname, None, mtu, None, group)
            flags = IFF_UP
        linkinfo = _string(IFLA_INFO_KIND, "veth") + _attr(
            IFLA_INFO_DATA | NLA_F_NESTED,
            _attr(VETH_INFO_PEER, _IFINFO.pack(0, 0, 0, 0, 0) + second),
        )
        body = _IFINFO.pack(0, 0, 0, flags, flags) + first
        body += _attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def add_fdb(self, index: int, mac: str) -> None:
        """``bridge fdb add MAC dev IF master static``."""
        ndmsg = struct.pack("=BxxxiHBB", AF_BRIDGE, index, NUD_NOARP, NTF_MASTER, 0)
        body = ndmsg + _attr(NDA_LLADDR, bytes.fromhex(mac.replace(":", "")))
        self._request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, body)

    def link(self, ifname: str | None = None, index: int = 0) -> LinkFacts | None:
        """One link by name or index (None if there is none), without its statistics."""
        body = _IFINFO.pack(0, 0, index, 0, 0) + (_string(IFLA_IFNAME, ifname) if ifname else b"")
        body += _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        try:
            data, offset, length = self._request(RTM_GETLINK, 0, body, answer=True)
        except RtnlError as exc:
            if exc.code in (19, 22):  # ENODEV, EINVAL: no such link
                return None
            raise
        return _facts(data, offset, length)

    def links(self, groups: Collection[int] | None = None) -> list[LinkFacts]:
        """Every link of the namespace, or those in link ``groups`` (one dump, statistics
        left out, little decoding; a link outside ``groups`` is not decoded at all)."""
        seq = next(self._seq)
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        header = _HEADER.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        self.sock.sendall(header + body)
        found: list[LinkFacts] = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, got, _pid = _HEADER.unpack_from(data, offset)
                if length < 16:
                    break
                if got == seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + 16)
                        raise RtnlError(-code, os.strerror(-code))
                    if groups is None or _group(data, offset, length) in groups:
                        found.append(_facts(data, offset, length))
                offset += (length + 3) & ~3

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """``ip addr add ADDRESS/PREFIXLEN dev INDEX`` (IPv6 without duplicate address
        detection: the address is usable at once, and the link is virtnet's own)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        packed = socket.inet_pton(family, address)
        flags = IFA_F_NODAD if family == socket.AF_INET6 else 0
        body = _IFADDR.pack(family, prefixlen, flags, 0, index)
        body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def add_default_route(self, gateway: str, protocol: int) -> None:
        """``ip route add default via GATEWAY proto PROTOCOL`` in the main table."""
        family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
        body = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, protocol, 0, RTN_UNICAST, 0)
        body += _attr(RTA_GATEWAY, socket.inet_pton(family, gateway))
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)

    def route_covering(self, address: str) -> str | None:
        """The prefix of the route the kernel would use for ``address`` (``ip route get
        ADDR fibmatch``), or None when only a default route or none covers it."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        packed = socket.inet_pton(family, address)
        body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, RTM_F_FIB_MATCH)
        try:
            data, offset, length = self._request(
                RTM_GETROUTE, 0, body + _attr(RTA_DST, packed), answer=True
            )
        except RtnlError as exc:
            if exc.code in (101, 113):  # ENETUNREACH, EHOSTUNREACH
                return None
            raise
        dst_len = data[offset + 17]
        if dst_len == 0:
            return None
        for kind, value in _attrs(data, offset + 16 + _RTMSG.size, offset + length):
            if kind == RTA_DST:
                return f"{socket.inet_ntop(family, value)}/{dst_len}"
        return None

    def delete_link(self, index: int) -> None:
        self._request(RTM_DELLINK, 0, _IFINFO.pack(0, 0, index, 0, 0))

    def delete_group(self, group: int) -> None:
        """Every link in link group ``group``, in one request (ENODEV: there was none)."""
        self._request(RTM_DELLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + _u32(IFLA_GROUP, group))

    def _request(
        self, msg_type: int, flags: int, body: bytes, answer: bool = False
    ) -> tuple[bytes, int, int]:
        """Send one request; returns (datagram, offset, length) of the answer when one is
        expected, raises :class:`RtnlError` with the kernel's errno."""
        seq = next(self._seq)
        request_flags = NLM_F_REQUEST | flags | (0 if answer else NLM_F_ACK)
        self.sock.sendall(_HEADER.pack(16 + len(body), msg_type, request_flags, seq, 0) + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, got, _pid = _HEADER.unpack_from(data, offset)
                if length < 16:
                    break
                if got == seq:
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + 16)
                        if code < 0:
                            raise RtnlError(-code, os.strerror(-code))
                    return data, offset, length
                offset += (length + 3) & ~3


__all__ = ["LinkFacts", "Rtnl", "RtnlError"]
