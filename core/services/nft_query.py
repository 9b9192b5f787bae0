"""Read-only questions to nf_tables over raw netlink, each costing O(1) in the ruleset's size.

libnftables answers ``list chain`` only after loading every chain and set of the ruleset into
its cache (tens of milliseconds with a thousand networks), so a drift check that asks it is
O(networks), and a daemon checking networks as events come was O(networks) per event. These
ask the kernel directly: the rules of one chain (a dump filtered by table and chain) and
whether one set holds an element (a ``GETSETELEM`` for it).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator

from virtnet.services.nft_elements import (
    FAMILIES,
    NFNL_SUBSYS_NFTABLES,
    NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NftElements,
    _attr,
    _message,
)
from virtnet.services.rtnl import _attrs as netlink_attrs
from virtnet.services.rtnl import _text as netlink_text

NFT_MSG_GETRULE, NFT_MSG_NEWRULE, NFT_MSG_GETSETELEM = 7, 6, 13
NFT_MSG_NEWSETELEM = 12
NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END = 3, 1
NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFTA_TABLE_NAME = 0, 1, 1
NFTA_RULE_TABLE, NFTA_RULE_CHAIN = 1, 2
NLM_F_DUMP = 0x300
NLMSG_DONE = 0x3


class NftQuery(NftElements):
    """Queries on the same kind of socket as element changes (one per services thread)."""

    def rule_count(self, family: str, table: str, chain: str) -> int:
        """How many rules ``chain`` holds (0 if it, or its table, does not exist)."""
        body = _attr(NFTA_RULE_TABLE, table.encode() + b"\0") + _attr(
            NFTA_RULE_CHAIN, chain.encode() + b"\0"
        )
        seq = self._dump(NFT_MSG_GETRULE, family, body)
        rules = 0
        for msg_type, code in self._replies(seq):
            if msg_type == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE:
                rules += 1
            elif msg_type == NLMSG_ERROR and code not in (0, -errno.ENOENT):
                raise OSError(-code, f"nf_tables rule dump of {chain}: {errno.errorcode[-code]}")
        return rules

    def tables(self) -> list[tuple[str, str]]:
        """(family, name) of every table: one dump of table headers, whatever they hold."""
        seq = next(self._seq)
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
        self.sock.sendall(_message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0, 0, b""))
        names = {number: name for name, number in FAMILIES.items()}
        found: list[tuple[str, str]] = []
        for msg_type, _code, payload in self._messages(seq):
            if msg_type != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE:
                continue
            family = payload[0]  # struct nfgenmsg (4 bytes), then the attributes
            for attr, value in netlink_attrs(payload, 4, len(payload)):
                if attr == NFTA_TABLE_NAME:
                    found.append((names.get(family, str(family)), netlink_text(value)))
        return found

    def has(self, family: str, table: str, set_name: str, element: bytes) -> bool:
        """Whether ``set_name`` holds ``element``, an encoded element attribute (with its key
        end for a range: :func:`virtnet.services.nft_raw.element_key`); False if the set is
        missing."""
        body = (
            _attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
            + _attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
            + _attr(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, element)
        )
        seq = next(self._seq)
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM
        self.sock.sendall(_message(kind, NLM_F_REQUEST | NLM_F_ACK, seq, FAMILIES[family], 0, body))
        found = False
        for msg_type, code in self._replies(seq):
            if msg_type == NLMSG_ERROR and code not in (0, -errno.ENOENT):
                raise OSError(-code, f"nf_tables element query in {set_name}")
            found |= msg_type != NLMSG_ERROR
        return found

    def has_elements(self, family: str, table: str, set_name: str) -> bool:
        """Whether ``set_name`` (a set or map) holds anything (False if it is missing): one
        dump in the kernel, where ``nft list`` would load every chain of the ruleset first.
        An interval set's lone end markers (nft leaves ``0.0.0.0`` as one) are nothing."""
        body = _attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0") + _attr(
            NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0"
        )
        seq = self._dump(NFT_MSG_GETSETELEM, family, body)
        found = False
        for msg_type, code, payload in self._messages(seq):
            if msg_type == NLMSG_ERROR and code not in (0, -errno.ENOENT):
                raise OSError(-code, f"nf_tables element dump of {set_name}")
            if msg_type == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM:
                found |= any(_starts(payload))
        return found

    def _dump(self, msg_type: int, family: str, body: bytes) -> int:
        """Ask for a dump of ``msg_type`` objects matching ``body``; returns its sequence."""
        seq = next(self._seq)
        kind = (NFNL_SUBSYS_NFTABLES << 8) | msg_type
        self.sock.sendall(
            _message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, FAMILIES[family], 0, body)
        )
        return seq

    def _replies(self, seq: int) -> list[tuple[int, int]]:
        """(type, error code or 0) of every answer to ``seq``, up to its end (DONE, or the
        error/ack message that ends a non-dump request)."""
        return [(msg_type, code) for msg_type, code, _payload in self._messages(seq)]

    def _messages(self, seq: int) -> Iterator[tuple[int, int, bytes]]:
        """(type, error code or 0, payload) of every answer to ``seq``, up to its end (DONE
        ends it unreported; an error or ack message is the last one reported)."""
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type, _flags, msg_seq, _pid = struct.unpack_from("=IHHII", data, offset)
                payload = data[offset + 16 : offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if msg_type == NLMSG_DONE:
                    return
                if msg_type == NLMSG_ERROR:
                    yield msg_type, struct.unpack_from("=i", payload)[0], payload
                    return
                yield msg_type, 0, payload


def _starts(payload: bytes) -> Iterator[bool]:
    """For each element of a set element dump message: True unless it is an interval's end."""
    for kind, elements in netlink_attrs(payload, 4, len(payload)):
        if kind & ~NLA_F_NESTED != NFTA_SET_ELEM_LIST_ELEMENTS:
            continue
        for _, element in netlink_attrs(elements, 0, len(elements)):
            flags = 0
            for attr, value in netlink_attrs(element, 0, len(element)):
                if attr & ~NLA_F_NESTED == NFTA_SET_ELEM_FLAGS and len(value) >= 4:
                    flags = struct.unpack(">I", value[:4])[0]
            yield not flags & NFT_SET_ELEM_INTERVAL_END
