"""The firewall service: adds and removes one network's or one port's rules atomically.

Rendering lives in :mod:`virtnet.services.firewall_rules` (pure); this module runs it
through :class:`~virtnet.services.nft.Nft`. Removal is idempotent, as undo must be: if the
one-transaction removal fails because something was already gone (a flushed table, a crash
half-way), each statement is retried alone and missing objects are ignored. A table of
virtnet's is deleted once nothing uses it, so a host goes back to exactly its old ruleset.
"""

from __future__ import annotations

from virtnet.services import firewall_rules as rules
from virtnet.services.nft import Nft


class Firewall:
    def __init__(self, nft: Nft) -> None:
        self.nft = nft

    # networks -------------------------------------------------------------------------------
    def add_network(self, r: rules.NetworkRules) -> None:
        if not self.nft.table_exists("inet", rules.TABLE):
            # its own transaction: nftables 1.0.6 cannot add an interval element to a map
            # created in the same batch (ENOENT)
            self.nft.run("\n".join(rules.inet_base()), f"table inet {rules.TABLE}")
        self.nft.run("\n".join(rules.add_network(r)), f"the rules of bridge {r.bridge}")

    def remove_network(self, r: rules.NetworkRules) -> None:
        self._remove(rules.remove_network(r))
        self._drop_if_unused("inet", ("fwd_in", "fwd_out", "nat4", "nat6"))

    def network_drift(self, r: rules.NetworkRules) -> list[str]:
        """What is missing of the network's rules (read only)."""
        if not self.nft.table_exists("inet", rules.TABLE):
            return [f"nftables table inet {rules.TABLE} is missing"]
        problems = []
        for chain in r.chains:
            if not self._chain_has_rules("inet", chain):
                problems.append(f"nftables chain inet {rules.TABLE} {chain} is missing or empty")
        for name in ("fwd_in", "fwd_out"):
            if not self._map_has("inet", name, r.bridge):
                problems.append(f"nftables map {name} has no entry for {r.bridge}")
        for base in ("forward", "postrouting"):
            if not self._chain_has_rules("inet", base):
                problems.append(f"nftables chain inet {rules.TABLE} {base} is missing or empty")
        return problems

    # ports ----------------------------------------------------------------------------------
    def add_port_guard(self, g: rules.PortGuard) -> None:
        exists = self.nft.table_exists("bridge", rules.TABLE)
        base = [] if exists else rules.bridge_base()
        self.nft.run("\n".join(base + rules.add_port_guard(g)), f"the guard of port {g.ifname}")

    def allow(self, g: rules.PortGuard, addresses: list[str]) -> None:
        if addresses:
            self.nft.run("\n".join(rules.allow_addresses(g, addresses)), f"addresses of {g.mac}")

    def remove_port_guard(self, g: rules.PortGuard) -> None:
        self._remove(rules.remove_port_guard(g))
        self._drop_if_unused("bridge", ("port_in",))

    # helpers --------------------------------------------------------------------------------
    def _remove(self, statements: list[str]) -> None:
        if self.nft.try_run("\n".join(statements)):
            return
        for statement in statements:  # something was already gone: remove what is left
            self.nft.try_run(statement)

    def _drop_if_unused(self, family: str, maps: tuple[str, ...]) -> None:
        if not self.nft.table_exists(family, rules.TABLE):
            return
        for name in maps:
            for item in self.nft.query(f"list map {family} {rules.TABLE} {name}"):
                if item.get("map", {}).get("elem"):
                    return
        self.nft.try_run(f"delete table {family} {rules.TABLE}")

    def _chain_has_rules(self, family: str, chain: str) -> bool:
        return any(
            "rule" in i for i in self.nft.query(f"list chain {family} {rules.TABLE} {chain}")
        )

    def _map_has(self, family: str, name: str, key: str) -> bool:
        for item in self.nft.query(f"list map {family} {rules.TABLE} {name}"):
            for elem in item.get("map", {}).get("elem", []):
                if isinstance(elem, list) and elem and elem[0] == key:
                    return True
        return False
