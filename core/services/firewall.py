"""The firewall service: adds and removes one network's or one port's rules atomically.

Rendering lives in :mod:`virtnet.services.firewall_rules` (pure); this module runs it
through :class:`~virtnet.services.nft.Nft`. Removal is idempotent, as undo must be: if the
one-transaction removal fails because something was already gone (a flushed table, a crash
half-way), each statement is retried alone and missing objects are ignored. virtnet's tables
are deleted when a network stops and nothing uses them any more, so a host goes back to
exactly its old ruleset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
from typing import Any

from virtnet.errors import OperationFailed
from virtnet.services import firewall_rules as rules
from virtnet.services import guard_rules
from virtnet.services.nft import Nft
from virtnet.services.nft_elements import ElementChange, NftElementError, merged
from virtnet.services.nft_query import NftQuery
from virtnet.services.nft_raw import element_key

#: The chains of virtnet's tables which every network's elements are looked up from.
SHARED_CHAINS = (*(("inet", name) for name in rules.CHAINS), ("bridge", "prerouting"))


class Firewall:
    def __init__(self, nft: Nft, elements: NftQuery) -> None:
        self.nft = nft
        self.elements = elements
        self._destroy_supported = True  # NFT_MSG_DESTROYSETELEM (Linux 6.3)

    # networks -------------------------------------------------------------------------------
    def add_network(self, r: rules.NetworkRules | None) -> None:
        """The network's rules (None: it has none, e.g. open mode) as one raw transaction,
        with the anti-spoofing table made ready for its ports first.

        The common case is one raw question (is the guard table ready) and one raw batch.
        Only when virtnet's tables are missing (the first network) or not as this version
        makes them are both bases made, in one libnftables transaction (~2.5 ms; they were
        three, ~8 ms, on every first network's start)."""
        guard_ready = self._guard_table_ready()
        if r is None:
            if not guard_ready:
                self.nft.run("\n".join(guard_rules.bridge_base()), "the guard table")
            return
        script = "\n".join(rules.add_network(r))
        if guard_ready and self.nft.try_run(script):  # raw; libnftables if raw cannot
            return
        # its own transaction: nftables 1.0.6 cannot add an interval element to a map created
        # in the same batch (ENOENT); the bases are idempotent (flush and refill)
        bases = rules.inet_base() + ([] if guard_ready else guard_rules.bridge_base())
        self.nft.run("\n".join(bases), f"virtnet's tables (for bridge {r.bridge})")
        self.nft.run(script, f"the rules of bridge {r.bridge}")

    def _guard_table_ready(self) -> bool:
        """The anti-spoofing table is there as this version makes it (one raw question): its
        ~80 statements then stay out of every network's start (libnftables parses them all,
        ~15 ms). An older or damaged one is made again (the statements are idempotent)."""
        count = self.elements.rule_count
        return (
            count("bridge", rules.TABLE, "prerouting") == guard_rules.PREROUTING_RULES
            and count("bridge", rules.TABLE, "drop_nd") == 2  # with drops remembered
        )

    def remove_network(self, r: rules.NetworkRules) -> None:
        self._remove(rules.remove_network(r))

    def repair_network(self, r: rules.NetworkRules) -> None:
        """After someone flushed or deleted virtnet's tables: the shared bases again (they
        are idempotent), then the network's own rules, whatever is left of them removed."""
        self.nft.run("\n".join(rules.inet_base()), f"table inet {rules.TABLE}")
        self.nft.run("\n".join(guard_rules.bridge_base()), f"table bridge {rules.TABLE}")
        self.remove_network(r)
        self.add_network(r)

    def network_drift(self, r: rules.NetworkRules) -> list[str]:
        """What is missing of the network's rules (read only): the shared chains' rules (one
        dump each), then each of its elements (a ``GETSETELEM``), O(1) in the number of
        networks."""
        query = self.elements
        problems = [
            f"nftables chain inet {rules.TABLE} {chain} is missing or empty"
            for chain in [*rules.CHAINS, *r.chains]
            if not query.rule_count("inet", rules.TABLE, chain)
        ]
        if not query.rule_count("bridge", rules.TABLE, "prerouting"):
            problems.append(f"nftables chain bridge {rules.TABLE} prerouting is missing or empty")
        if problems:  # no table, or not this version's: its elements say no more
            return problems
        for name, fields in rules.network_elements(r):
            bare = [field.strip('"') for field in fields]  # quoted names hold no quote
            if not query.has("inet", rules.TABLE, name, element_key(name, bare)):
                problems.append(f"nftables set {name} has no element {' . '.join(fields)}")
        return problems

    def shared_drift(self) -> list[str]:
        """What is missing of the chains every network's rules hang from (read only)."""
        return [
            f"nftables chain {family} {rules.TABLE} {chain} is missing or empty"
            for family, chain in SHARED_CHAINS
            if not self.elements.rule_count(family, rules.TABLE, chain)
        ]

    def join_link(self, key: str, ifname: str, r: rules.NetworkRules | None = None) -> None:
        """A guest link of a routed network (no bridge) joins the network's firewall."""
        self.nft.run("\n".join(rules.join_link(key, ifname, r)), f"the rules of link {ifname}")

    def leave_link(self, ifname: str, r: rules.NetworkRules | None = None) -> None:
        self._remove(rules.leave_link(ifname, r))

    # ports ----------------------------------------------------------------------------------
    def add_port_guard(self, g: guard_rules.PortGuard, leased: tuple[str, ...] = ()) -> None:
        """``leased``: addresses the port's MAC already holds a lease for (a re-plug)."""
        changes = guard_rules.port_guard_changes(g, add=True, addresses=g.ips, leased=leased)
        try:
            self.elements.apply(changes)
        except NftElementError as exc:
            if exc.errno != errno.ENOENT:
                raise OperationFailed(f"cannot guard port {g.ifname}: {exc.strerror}") from None
            self.nft.run("\n".join(guard_rules.bridge_base()), f"table bridge {rules.TABLE}")
            self.elements.apply(changes)

    def drops(self, ifname: str | None = None) -> list[dict[str, Any]]:
        """What the guards dropped lately (:data:`guard_rules.DROP_REASONS`), of one link or of
        all: reason (its set), link, source (None for reasons without one), packets, bytes,
        and how many seconds ago the last one was. Reads the drop sets only (on request:
        ``net-port-info``, ``net-port-list``), never on a plug's path."""
        found = []
        for name in guard_rules.DROP_REASONS:
            for item in self.nft.query(f"list set bridge {rules.TABLE} {name}"):
                for wrapped in item.get("set", {}).get("elem", []):
                    elem = wrapped.get("elem", {}) if isinstance(wrapped, dict) else {}
                    value = elem.get("val")
                    link, source = (
                        (value["concat"][0], str(value["concat"][1]))
                        if isinstance(value, dict) and "concat" in value
                        else (value, None)
                    )
                    if ifname is not None and link != ifname:
                        continue
                    counter = elem.get("counter") or {}
                    left = int(elem.get("expires", 0))  # the timeout restarts at each drop
                    found.append({
                        "reason": name,
                        "link": link,
                        "source": source,
                        "packets": int(counter.get("packets", 0)),
                        "bytes": int(counter.get("bytes", 0)),
                        "seconds_ago": max(0, guard_rules.DROP_MEMORY_S - left),
                    })  # fmt: skip
        return sorted(found, key=lambda d: d["seconds_ago"])

    def remove_port_guard(self, g: guard_rules.PortGuard, leased: list[str]) -> None:
        self.remove_elements(self.port_guard_removal(g, leased))

    @staticmethod
    def port_guard_removal(g: guard_rules.PortGuard, leased: list[str]) -> list[ElementChange]:
        return guard_rules.port_guard_changes(
            g, add=False, addresses=g.ips, leased=tuple(sorted(set(leased)))
        )

    def add_host_guard(self, mac: str, guarded: bool, isolated: bool) -> None:
        """The host-side facts of a port on any backend (see ``guard_rules.host_guard_changes``);
        the network's start made the table."""
        changes = guard_rules.host_guard_changes(mac, guarded, isolated, add=True)
        try:
            self.elements.apply(changes)
        except NftElementError as exc:
            raise OperationFailed(f"cannot guard port {mac} on the host: {exc.strerror}") from None

    def remove_host_guard(self, mac: str, guarded: bool, isolated: bool) -> None:
        self.remove_elements(self.host_guard_removal(mac, guarded, isolated))

    @staticmethod
    def host_guard_removal(mac: str, guarded: bool, isolated: bool) -> list[ElementChange]:
        return guard_rules.host_guard_changes(mac, guarded, isolated, add=False)

    def remove_elements(self, changes: list[ElementChange]) -> None:
        """Remove set elements, any number of ports' at once (idempotent: what is already
        gone is skipped). One transaction per :data:`~virtnet.services.nft_elements.
        KEYS_PER_BATCH` keys; on a kernel without ``DESTROYSETELEM`` (before 6.3), a missing
        element fails its whole transaction and each key is then retried alone."""
        for batch in merged(changes):
            try:
                self.elements.apply(batch, missing_ok=self._destroy_supported)
                continue
            except NftElementError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL) and self._destroy_supported:
                    self._destroy_supported = False
                    self.remove_elements(batch)
                    continue
            for change in batch:  # a set or table is gone: remove what is left, key by key
                for key in change.keys:
                    with contextlib.suppress(NftElementError):
                        self.elements.apply([dataclasses.replace(change, keys=(key,))])

    # the shared tables ------------------------------------------------------------------------
    def drop_unused_tables(self) -> None:
        """Delete virtnet's tables once no network or port uses them (run on network stop).

        Reads only the small dispatch sets, never the whole ruleset.
        """
        # every network has its element in one of these (a network of links by prefix:
        # same_p; and only a bridged one in same)
        no_networks = self._empty("inet", "same") and self._empty("inet", "same_p")
        if no_networks:
            self.nft.try_run(f"delete table inet {rules.TABLE}")
        # the guard table stays while a network with rules remains: its drift check expects it
        if no_networks and self._empty("bridge", "guarded"):
            self.nft.try_run(f"delete table bridge {rules.TABLE}")

    # helpers --------------------------------------------------------------------------------
    def _remove(self, statements: list[str]) -> None:
        if self.nft.try_run("\n".join(statements)):
            return
        for statement in statements:  # something was already gone: remove what is left
            self.nft.try_run(statement)

    def _empty(self, family: str, name: str) -> bool:
        return not self.elements.has_elements(family, rules.TABLE, name)
