"""The kernel's notifications virtnetd listens to, and their parsers (pure functions of the
bytes the kernel sends): rtnetlink link changes, nftables deletions, inotify, pidfds.

nftables messages carry the table's name as attribute 1 whatever their kind, and virtnet's
network elements carry ``comment "n<uuid hex>"`` (their user data, which a deletion's
notification repeats), its rare chains of a network are named ``n<uuid hex>_...``: the
network a deletion hit is read from the message's bytes themselves.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import select
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

NETLINK_NETFILTER = 12
RTMGRP_LINK = 0x1
NFNLGRP_NFTABLES = 7
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME = 3
NFNL_SUBSYS_NFTABLES = 10
#: nftables notifications that remove something (NFT_MSG_DEL*, and DESTROY* of newer kernels)
NFT_DELETIONS = {2, 5, 8, 11, 14, 20, 24, 26, 27, 28, 29, 30, 31, 32}
NFT_ELEMENT_DELETIONS = {14, 30}  # NFT_MSG_DELSETELEM, NFT_MSG_DESTROYSETELEM
IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
IN_DELETE_SELF, IN_IGNORED, IN_MOVED_FROM, IN_DELETE = 0x400, 0x8000, 0x40, 0x200
#: A directory's files replaced or rewritten (resolv.conf is often renamed over)
DIR_CHANGES = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
_NETWORK_CHAIN = re.compile(rb"n([0-9a-f]{32})(?:_[a-z0-9]+)?\x00")  # a comment, a chain
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, data[offset + _HEADER.size : offset + length]
        offset += (length + 3) & ~3


def _attrs(payload: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    offset = start
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, payload[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def link_changes(data: bytes) -> list[str]:
    """The names of the links an rtnetlink datagram reports added, changed or deleted."""
    names = []
    for kind, payload in _messages(data):
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            for attr, value in _attrs(payload, 16):  # after struct ifinfomsg
                if attr == IFLA_IFNAME:
                    names.append(value.split(b"\0", 1)[0].decode(errors="replace"))
    return names


@dataclass
class NftDeletions:
    """What an nftables notification datagram removed from virtnet's tables."""

    networks: set[str] = field(default_factory=set)  # uuids without dashes
    #: A removal that names no network (a base chain's rule, a table): the chains every
    #: network hangs from may be gone. Network starts flush and refill those chains too.
    unattributed: bool = False


def nft_deletions(data: bytes, table: str) -> NftDeletions:
    found = NftDeletions()
    wanted = table.encode() + b"\0"
    for kind, payload in _messages(data):
        if kind >> 8 != NFNL_SUBSYS_NFTABLES or kind & 0xFF not in NFT_DELETIONS:
            continue
        attrs = dict(_attrs(payload, 4))  # after struct nfgenmsg
        if attrs.get(1) != wanted:  # attribute 1 is the table's name in every message kind
            continue
        keys = {m.decode() for m in _NETWORK_CHAIN.findall(payload)}
        found.networks |= keys
        if not keys and kind & 0xFF not in NFT_ELEMENT_DELETIONS:  # elements: a port guard's
            found.unattributed = True
    return found


class Inotify:
    """The leases files to watch, through libc's inotify (the standard library has none)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._paths: dict[int, str] = {}

    def add(self, path: str, mask: int = IN_MODIFY | IN_DELETE_SELF) -> int | None:
        """Watch ``path``; a directory's events come back as the paths of its entries."""
        wd = self._libc.inotify_add_watch(self.fd, path.encode(), mask)
        if wd < 0:
            return None  # not there (yet): the slow pass looks again
        self._paths[wd] = path
        return int(wd)

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)
        self._paths.pop(wd, None)

    def read(self) -> set[str]:
        """The paths that changed since the last read."""
        changed: set[str] = set()
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return changed
        offset = 0
        while offset + 16 <= len(data):
            wd, mask, _cookie, length = struct.unpack_from("=iIII", data, offset)
            path = self._paths.get(wd)
            name = data[offset + 16 : offset + 16 + length].split(b"\0", 1)[0]
            if path is not None:
                changed.add(os.path.join(path, name.decode(errors="replace")) if name else path)
            if mask & IN_IGNORED:
                self._paths.pop(wd, None)
            offset += 16 + length
        return changed

    def close(self) -> None:
        os.close(self.fd)


def netlink_socket(protocol: int, groups: int) -> socket.socket:
    """A notification socket in the calling thread's network namespace (the kernel ties a
    socket to the namespace of the task that made it); large buffer, non-blocking."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, groups))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> tuple[list[bytes], bool]:
    """Every datagram waiting on ``sock``; True as well if the kernel dropped some (ENOBUFS:
    the socket overflowed, so anything may have changed)."""
    datagrams, lost = [], False
    while True:
        try:
            datagrams.append(sock.recv(1 << 16))
        except BlockingIOError:
            return datagrams, lost
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            lost = True


def pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (None if it already has)."""
    try:
        return os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None


def readable(fds: list[int], timeout: float) -> set[int]:
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(max(timeout, 0) * 1000)}
