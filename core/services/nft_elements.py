"""Set elements over raw nf_tables netlink: the per-port fast path.

libnftables loads the ruleset's chains and sets into its cache before every command, so one
``add element`` costs milliseconds once a thousand networks exist. Adding or removing a few
set elements needs no cache at all: this module sends them as one nfnetlink batch (a single
atomic transaction, like libnftables' own) in a few microseconds of kernel time, whatever the
size of the ruleset. It only handles what the anti-spoofing sets need: keys made of interface
names, MAC addresses and IP addresses, concatenated.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14
NFT_MSG_DESTROYSETELEM = 30  # Linux 6.3: a delete that ignores what is already gone
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 0x2
NLA_F_NESTED = 0x8000
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_DATA_VALUE = 1
FAMILIES = {"ip": 2, "inet": 1, "bridge": 7, "ip6": 10, "arp": 3, "netdev": 5}
IFNAMSIZ = 16


def ifname_key(name: str) -> bytes:
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is too long")
    return raw.ljust(IFNAMSIZ, b"\0")


def mac_key(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ip_key(address: str) -> bytes:
    """An address as the kernel keys it: ``inet_pton`` (0.4 us; ``ipaddress`` takes 7-14 us,
    paid per address for every port a destroy removes)."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except OSError:
        raise ValueError(f"{address!r} is not an IP address") from None


def concat(*parts: bytes) -> bytes:
    """nftables concatenations pad every field to a 32-bit register boundary."""
    return b"".join(p + b"\0" * (-len(p) % 4) for p in parts)


def _attr(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def _message(msg_type: int, flags: int, seq: int, family: int, res_id: int, body: bytes) -> bytes:
    nfgen = struct.pack("=BBH", family, 0, socket.htons(res_id))
    length = 16 + len(nfgen) + len(body)
    return struct.pack("=IHHII", length, msg_type, flags, seq, 0) + nfgen + body


@dataclass(frozen=True)
class ElementChange:
    """Add or delete ``keys`` (already encoded) in ``family table set``."""

    add: bool
    family: str
    table: str
    set: str
    keys: tuple[bytes, ...]


class NftElementError(OSError):
    pass


#: Keys per transaction of :func:`merged` batches: a netlink message must fit the socket's
#: send buffer (~200 kB), and a key with its attributes takes up to ~60 bytes.
KEYS_PER_BATCH = 2000


def merged(changes: list[ElementChange]) -> list[list[ElementChange]]:
    """Many ports' changes as few messages (one per set, in the order sets first appear) and
    transactions of at most :data:`KEYS_PER_BATCH` keys: a network's teardown removes a
    thousand ports' elements in a handful of messages instead of thousands."""
    by_set: dict[tuple[bool, str, str, str], list[bytes]] = {}
    for c in changes:
        by_set.setdefault((c.add, c.family, c.table, c.set), []).extend(c.keys)
    batches: list[list[ElementChange]] = [[]]
    room = KEYS_PER_BATCH
    for (add, family, table, name), keys in by_set.items():
        while keys:
            if room == 0:
                batches.append([])
                room = KEYS_PER_BATCH
            part, keys = keys[:room], keys[room:]
            batches[-1].append(ElementChange(add, family, table, name, tuple(part)))
            room -= len(part)
    return [batch for batch in batches if batch]


class NftElements:
    """A NETLINK_NETFILTER socket in the creating thread's namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self._seq = itertools.count(int.from_bytes(os.urandom(2), "big") << 8)

    def close(self) -> None:
        self.sock.close()

    def apply(self, changes: list[ElementChange], *, missing_ok: bool = False) -> None:
        """All ``changes`` in one transaction; raises :class:`NftElementError` (with errno)
        and changes nothing if any fails (ENOENT: no such table, set or element).

        ``missing_ok``: removals ignore elements already gone (``NFT_MSG_DESTROYSETELEM``; a
        kernel older than 6.3 answers EOPNOTSUPP or EINVAL, see :func:`merged`)."""
        if not changes:
            return
        messages = []
        for change in changes:
            elements = b"".join(
                _attr(
                    NFTA_LIST_ELEM | NLA_F_NESTED,
                    _attr(NFTA_SET_ELEM_KEY | NLA_F_NESTED, _attr(NFTA_DATA_VALUE, key)),
                )
                for key in change.keys
            )
            body = (
                _attr(NFTA_SET_ELEM_LIST_TABLE, change.table.encode() + b"\0")
                + _attr(NFTA_SET_ELEM_LIST_SET, change.set.encode() + b"\0")
                + _attr(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, elements)
            )
            kind = NFT_MSG_NEWSETELEM if change.add else NFT_MSG_DELSETELEM
            if missing_ok and not change.add:
                kind = NFT_MSG_DESTROYSETELEM
            messages.append(
                (kind, NLM_F_CREATE if change.add else 0, FAMILIES[change.family], body)
            )
        self.batch(messages)

    def batch(self, messages: list[tuple[int, int, int, bytes]]) -> None:
        """``(type, flags, family, attributes)`` nf_tables messages as one transaction (each
        acknowledged); raises :class:`NftElementError` and changes nothing if one fails."""
        seqs = []
        parts = [
            _message(
                NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, next(self._seq), 0, NFNL_SUBSYS_NFTABLES, b""
            )
        ]
        for kind, flags, family, body in messages:
            seq = next(self._seq)
            seqs.append(seq)
            parts.append(
                _message(
                    (NFNL_SUBSYS_NFTABLES << 8) | kind,
                    NLM_F_REQUEST | NLM_F_ACK | flags,
                    seq,
                    family,
                    0,
                    body,
                )
            )
        parts.append(
            _message(
                NFNL_MSG_BATCH_END, NLM_F_REQUEST, next(self._seq), 0, NFNL_SUBSYS_NFTABLES, b""
            )
        )
        self.sock.sendall(b"".join(parts))
        self._acks(set(seqs))

    def _acks(self, pending: set[int]) -> None:
        failure = 0
        while pending:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if msg_type == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + 16)
                    if code < 0 and not failure:
                        failure = -code
                    pending.discard(seq)
                    if code < 0:  # the kernel aborts the batch: no more answers come
                        pending.clear()
                offset += (length + 3) & ~3
        if failure:
            raise NftElementError(failure, os.strerror(failure))


__all__ = [
    "ElementChange",
    "NftElementError",
    "NftElements",
    "concat",
    "errno",
    "ifname_key",
    "ip_key",
    "mac_key",
    "merged",
]
