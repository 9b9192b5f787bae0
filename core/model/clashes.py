"""The other networks a new one must not clash with, indexed and kept between calls.

:func:`virtnet.model.validate.validate_against` compares a network with every other one: at
1,000 networks that was ~4 ms of every start, twice (the definitions, then the running
networks), the largest share of what grew with the number of networks. A :class:`ClashIndex`
is brought up to date with the current list of XMLs by difference (only XML it has not seen
is parsed; one set operation in C finds what changed) and answers the same question with
dictionary and sorted-list look-ups. Same errors, same fields; when a network clashes with
several others in several ways, which clash is named first may differ.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from virtnet.errors import Conflict, InvalidInput
from virtnet.model.network import Network
from virtnet.model.validate import Footprint, footprint, subnet_field

K = TypeVar("K")


@dataclass(frozen=True)
class _Known:
    """One other network, as the index files it."""

    print: Footprint
    bridge: str | None  # any bridge name it gives, own or not (a new name must differ)
    mac: str | None


class ClashIndex:
    """Footprints of a set of networks (given as XML) with the look-ups a clash check needs."""

    def __init__(self, parse: Callable[[str], Network]) -> None:
        self._parse = parse
        self._known: dict[str, _Known] = {}
        self._uuids: dict[str, list[str]] = {}  # uuid -> the names using it
        self._own_bridges: dict[str, list[str]] = {}  # a bridge it makes -> names
        self._bridges: Counter[str] = Counter()
        self._macs: Counter[str] = Counter()
        #: per IP version: (first, last, name, subnet) sorted, and how many spans of each size
        self._spans: dict[int, list[tuple[int, int, str, str]]] = {4: [], 6: []}
        self._sizes: dict[int, Counter[int]] = {4: Counter(), 6: Counter()}

    # keeping up -------------------------------------------------------------------------
    def sync(self, xmls: Iterable[str]) -> ClashIndex:
        """Hold exactly the networks ``xmls`` define (a network's XML is its identity here)."""
        now = set(xmls)
        for xml in [x for x in self._known if x not in now]:
            self._forget(xml)
        for xml in now.difference(self._known):
            self._learn(xml)
        return self

    def _learn(self, xml: str) -> None:
        net = self._parse(xml)
        known = _Known(footprint(net), net.bridge.name if net.bridge else None, net.mac)
        self._known[xml] = known
        name = known.print.name
        if known.print.uuid:
            self._uuids.setdefault(known.print.uuid, []).append(name)
        if known.print.bridge:
            self._own_bridges.setdefault(known.print.bridge, []).append(name)
        if known.bridge:
            self._bridges[known.bridge] += 1
        if known.mac:
            self._macs[known.mac] += 1
        for subnet, (version, first, last) in zip(
            known.print.subnets, known.print.spans, strict=True
        ):
            bisect.insort(self._spans[version], (first, last, name, str(subnet)))
            self._sizes[version][last - first] += 1

    def _forget(self, xml: str) -> None:
        known = self._known.pop(xml)
        name = known.print.name
        if known.print.uuid:
            _drop(self._uuids, known.print.uuid, name)
        if known.print.bridge:
            _drop(self._own_bridges, known.print.bridge, name)
        if known.bridge:
            _uncount(self._bridges, known.bridge)
        if known.mac:
            _uncount(self._macs, known.mac)
        for subnet, (version, first, last) in zip(
            known.print.subnets, known.print.spans, strict=True
        ):
            spans = self._spans[version]
            entry = (first, last, name, str(subnet))
            at = bisect.bisect_left(spans, entry)
            if at < len(spans) and spans[at] == entry:
                del spans[at]
            _uncount(self._sizes[version], last - first)

    # questions --------------------------------------------------------------------------
    @property
    def bridges(self) -> set[str]:
        """Every bridge name the networks give (for a name made up for a new one)."""
        return set(self._bridges)

    @property
    def macs(self) -> set[str]:
        return set(self._macs)

    def check(self, net: Network) -> None:
        """What :func:`~virtnet.model.validate.validate_against` checks, against the networks
        held (one of the same name is the network itself, as there)."""
        mine = footprint(net)
        for other in self._uuids.get(mine.uuid or "", []):
            if other != mine.name:
                raise Conflict(
                    f"uuid {net.uuid} is already used by network {other!r}",
                    subject="network/uuid",
                )
        for other in self._own_bridges.get(mine.bridge or "", []):
            if other != mine.name:
                raise Conflict(
                    f"bridge {mine.bridge!r} is already used by network {other!r}",
                    subject="network/bridge/@name",
                )
        for index, (version, first, last) in enumerate(mine.spans, 1):
            found = self._overlap(version, first, last, mine.name)
            if found is not None:
                other, theirs = found
                raise InvalidInput(
                    f"subnet {mine.subnets[index - 1]} overlaps {theirs} of network {other!r}",
                    subject="network/" + subnet_field(index, len(mine.spans)),
                )

    def _overlap(self, version: int, first: int, last: int, name: str) -> tuple[str, str] | None:
        """A span of another network that meets ``[first, last]``: any that does starts at
        most the longest span held before ``first``, so only those are looked at."""
        spans, sizes = self._spans[version], self._sizes[version]
        if not spans:
            return None
        longest = max(sizes)
        at = bisect.bisect_left(spans, (first - longest,))
        while at < len(spans) and spans[at][0] <= last:
            _, end, other, subnet = spans[at]
            if end >= first and other != name:
                return other, subnet
            at += 1
        return None


def _uncount(counter: Counter[K], key: K) -> None:
    """One fewer ``key``; gone when none is left (a Counter keeps zeros)."""
    counter[key] -= 1
    if not counter[key]:
        del counter[key]


def _drop(index: dict[str, list[str]], key: str, name: str) -> None:
    names = index[key]
    names.remove(name)
    if not names:
        del index[key]
