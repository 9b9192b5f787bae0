"""Which IPv4 addresses a network's guests hold, so that hosts plugging at the same moment
never hand out one address, at a cost that does not grow with the network's ports.

Each network has an OVN ``Address_Set`` (:func:`virtnet_ovn.nb.address_set_name`, role
``addresses``) holding every IPv4 address its logical ports have. A port's transaction adds
its addresses to the set after an OVSDB ``wait`` that none of them is in it yet: of two
hosts that chose one address, one commits and the other is told, whatever else they read.

So no plug reads the network's ports. The address it tries comes from a cursor in the set's
``external_ids`` (``virtnet-next``): the one after the last handed out. A released address
is therefore not given to the very next guest (other guests' ARP caches and DNS answers
still point at it for a while), as DHCP servers prefer. Only when the try fails (the range
wrapped round onto held addresses, or another host took it first) is the whole set read,
once, to choose again. (The lowest free address, as before, needed every port read on every
plug: 1.6 ms at the first port, 9.3 ms at the 300th.)

A network started by a virtnet that did not keep the set, or whose set was deleted, gets it
back at its next plug, rebuilt from its ports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from virtnet.errors import OperationFailed
from virtnet.model.network import Network
from virtnet.ownership import OVS_OWNER_KEY
from virtnet.services.ovsdb_rpc import (
    Op,
    OvsdbRpc,
    by_uuid,
    expect,
    insert,
    map_values,
    mutate,
    omap,
    oset,
    set_values,
)
from virtnet_ovn.nb import DB, NETWORK_KEY, address_set_name, ids, ipv4s, owned

ROLE = "addresses"
NEXT_KEY = "virtnet-next"
IPv4 = ipaddress.IPv4Address


@dataclass(frozen=True)
class Book:
    """A network's address set as a plug reads it: its row (None: not made yet) and the
    address to try next."""

    network: str
    row: str | None
    cursor: str | None


def read_book(db: OvsdbRpc, network: str) -> Book:
    """The set's row and cursor: one small row, however many addresses it holds."""
    name = address_set_name(network)
    rows = db.select(DB, "Address_Set", [["name", "==", name]], ["external_ids"])
    if not rows:
        return Book(network, None, None)
    marks = map_values(rows[0]["external_ids"])
    if marks.get(NETWORK_KEY) != network or not marks.get(OVS_OWNER_KEY, "").startswith("virtnet/"):
        raise OperationFailed(
            f"an Address_Set named {name} that virtnet did not make is in the way",
            subject="OVN northbound database",
        )
    return Book(network, str(rows[0]["_uuid"]), marks.get(NEXT_KEY))


def held(db: OvsdbRpc, network: str) -> set[IPv4]:
    """Every address the set holds (read only when a try failed)."""
    rows = db.select(DB, "Address_Set", [["name", "==", address_set_name(network)]], ["addresses"])
    return {IPv4(a) for row in rows for a in set_values(row["addresses"])}


def held_by_ports(db: OvsdbRpc, network: str) -> set[IPv4]:
    """The IPv4 addresses the network's logical ports list (to rebuild a missing set)."""
    taken = set()
    for row in db.select(DB, "Logical_Switch_Port", owned(network), ["addresses"]):
        for entry in set_values(row["addresses"]):
            for word in str(entry).split()[1:]:
                try:
                    address = ipaddress.ip_address(word)
                except ValueError:
                    continue
                if isinstance(address, IPv4):
                    taken.add(address)
    return taken


def candidates(net: Network, cursor: str | None, taken: set[IPv4]) -> Iterator[str]:
    """The addresses of the network's DHCP ranges from ``cursor`` (included) round to it
    again, without the network's own addresses, its reservations and ``taken``. Lazy: the
    first one costs the same in a /24 and a /8."""
    skip = {IPv4(h.ip) for ip in ipv4s(net) if ip.dhcp for h in ip.dhcp.hosts if h.ip}
    skip |= {IPv4(ip.address) for ip in ipv4s(net)} | taken
    spans: list[tuple[int, int]] = []
    for start, end in sorted(
        (int(IPv4(r.start)), int(IPv4(r.end)))
        for ip in ipv4s(net)
        if ip.dhcp
        for r in ip.dhcp.ranges
    ):
        if spans and start <= spans[-1][1] + 1:  # overlapping or adjacent ranges: one span
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    at = int(IPv4(cursor)) if cursor else None
    if at is None or not any(start <= at <= end for start, end in spans):
        later = [start for start, _ in spans if at is not None and start > at]
        at = later[0] if later else (spans[0][0] if spans else None)
    if at is None:
        return
    index = next(i for i, (start, end) in enumerate(spans) if start <= at <= end)
    order = [(at, spans[index][1]), *spans[index + 1 :], *spans[:index]]
    order += [(spans[index][0], at - 1)] if at > spans[index][0] else []
    for start, end in order:
        for value in range(start, end + 1):
            if IPv4(value) not in skip:
                yield str(IPv4(value))


def next_after(net: Network, address: str) -> str | None:
    """The cursor once ``address`` is handed out."""
    value = IPv4(int(IPv4(address)) + 1) if int(IPv4(address)) < 2**32 - 1 else IPv4(0)
    return next(candidates(net, str(value), set()), None)


def claim_ops(
    book: Book, claim: Iterable[str], cursor: str | None, rebuilt: set[IPv4] | None = None
) -> list[Op]:
    """Add ``claim`` to the network's set, failing (``Conflict``) if any of them is held
    already; move the cursor to ``cursor``. Without a set (``book.row`` None) it is made
    here from ``rebuilt`` (the ports' addresses): two hosts making it at once cannot both
    succeed (set names are unique)."""
    addresses = sorted(set(claim), key=IPv4)
    if not addresses:
        return []
    if book.row is None:
        held_now = sorted({str(a) for a in rebuilt or set()} | set(addresses), key=IPv4)
        marks = {NEXT_KEY: cursor} if cursor else {}
        row = {
            "name": address_set_name(book.network),
            "addresses": oset(held_now),
            "external_ids": ids(book.network, ROLE, **marks),
        }
        return [insert("Address_Set", row)]
    where = by_uuid(book.row)
    ops = [
        expect(
            "Address_Set",
            [*where, ["addresses", "excludes", oset(addresses)]],
            [{"name": address_set_name(book.network)}],
            ["name"],
        ),
    ]
    changes: list[list[object]] = [["addresses", "insert", oset(addresses)]]
    if cursor:
        changes += [["external_ids", "delete", oset([NEXT_KEY])],
                    ["external_ids", "insert", omap({NEXT_KEY: cursor})]]  # fmt: skip
    ops.append(mutate("Address_Set", where, *changes))
    return ops


def keep_ops(network: str, addresses: Iterable[str]) -> list[Op]:
    """Put a re-created port's addresses back in the set without the uniqueness wait (they
    are its own: a lost logical port's addresses stay held)."""
    values = _ipv4(addresses)
    if not values:
        return []
    return [mutate("Address_Set", owned(network, ROLE), ["addresses", "insert", oset(values)])]


def release_ops(network: str, addresses: Iterable[str]) -> list[Op]:
    """Give an unplugged port's IPv4 addresses back (with the port's own transaction)."""
    values = _ipv4(addresses)
    if not values:
        return []
    return [mutate("Address_Set", owned(network, ROLE), ["addresses", "delete", oset(values)])]


def _ipv4(addresses: Iterable[str]) -> list[str]:
    return sorted({a for a in addresses if isinstance(ipaddress.ip_address(a), IPv4)}, key=IPv4)
