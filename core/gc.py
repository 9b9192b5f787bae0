"""The collector: objects carrying virtnet's label that no record owns any more.

Journals undo what a killed process left half-built (``Virtnet._recover``); this finds what
nothing journals: a record lost with a wiped state directory, a port record deleted by hand,
a journal line torn by a crash. It looks only at labelled objects (:mod:`virtnet.ownership`)
and at virtnet's own nftables tables and run directory, so an object virtnet did not make is
never a candidate, whatever its name.

Runs under the host lock (``virtnet gc``, and virtnetd at start), so no operation is half-way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virtnet.ownership import Owner, parse_label
from virtnet.services.dnsmasq_conf import DnsmasqFiles

if TYPE_CHECKING:
    from virtnet.services import Services

log = logging.getLogger(__name__)
_CHAIN = re.compile(r"n([0-9a-f]{32})_([a-z0-9]+)")
_COMMENT = re.compile(r"n([0-9a-f]{32})")  # a network's elements (firewall_rules.add_network)


@dataclass(frozen=True)
class Orphan:
    """One object the collector would remove (``virtnet gc --dry-run`` prints these)."""

    #: link | ovs-bridge | ovs-port | nft-chain | nft-element | dnsmasq | dnsmasq-member
    kind: str
    name: str
    owner: str  # the label, or the network uuid the object is keyed by
    where: str = ""  # the OVS bridge of a port; the nftables family of a chain

    def line(self) -> str:
        where = f" on {self.where}" if self.where else ""
        return f"{self.kind} {self.name}{where} (owner {self.owner})"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "owner": self.owner, "where": self.where}


@dataclass(frozen=True)
class Records:
    """What virtnet's records own: active networks' uuids and live ports' uuids."""

    networks: frozenset[str]
    ports: frozenset[str]
    macs: frozenset[str] = frozenset()  # the live ports' MACs: keys of the guard sets
    scope: str | None = None  # this virtnet's (ownership.scope_of); others' are not ours

    def owns(self, owner: Owner | None) -> bool:
        if owner is None or owner.scope != self.scope:
            return True  # not a label of ours (or another virtnet's): never a candidate
        if owner.network not in self.networks:
            return False
        return owner.port is None or owner.port in self.ports


def find(services: Services, records: Records, run_dir: Path) -> list[Orphan]:
    """Every labelled object no record owns (read only)."""
    labelled = services.netlink.labelled_links()  # one dump, for links and for _shared
    # a retired link (renamed ``vnr<ifindex>``) is only waiting for deletion, whoever its
    # label names: a process killed before its reaper ran leaves it behind, and the network
    # or port it served may be running again (started again, or repaired) with new links
    found = [
        Orphan("link", name, label)
        for name, label in sorted(labelled.items())
        if not records.owns(parse_label(label)) or _retired(name, label, records)
    ]
    found += _ovs(services, records)
    if not _shared(labelled, records):  # virtnet's tables are one per namespace
        from virtnet.services.firewall_rules import TABLE

        # each table listed once (libnftables loads the whole ruleset for every listing)
        tables = {f: services.nft.query(f"list table {f} {TABLE}") for f in ("bridge", "inet")}
        found += _chains(tables["inet"], records) + _network_elements(tables["inet"], records)
        links = set(services.netlink.names()) - {o.name for o in found if o.kind == "link"}
        for family, items in tables.items():
            found += _stale_elements(items, family, links, records.macs)
    keys = {uuid for uuid in records.networks}
    directory = run_dir / "dnsmasq"
    if directory.is_dir():
        found += [
            Orphan("dnsmasq", str(path), path.name)
            for path in sorted(directory.iterdir())
            if path.is_dir() and path.name not in keys
        ]
    return found + _dnsmasq_members(run_dir, keys)


def _dnsmasq_members(run_dir: Path, keys: set[str]) -> list[Orphan]:
    """Parts of shared dnsmasqs (:mod:`virtnet.services.dnsmasq_group`) whose network is not
    running: a process killed after its network's records went, before the group's restart."""
    from virtnet.services.dnsmasq_group import GROUPS

    found = []
    for group in sorted((run_dir / GROUPS).glob("g*/")):
        for part in sorted((group / "nets").glob("*.conf")):
            if part.stem not in keys:
                found.append(Orphan("dnsmasq-member", part.stem, part.stem, str(group)))
    return found


def _retired(name: str, label: str, records: Records) -> bool:
    """A link this virtnet retired (another's are its own business)."""
    from virtnet.services.netlink import RETIRED_PREFIX

    owner = parse_label(label)
    return name.startswith(RETIRED_PREFIX) and owner is not None and owner.scope == records.scope


def _shared(labelled: dict[str, str], records: Records) -> bool:
    """Whether another virtnet (another state directory) has objects in this namespace:
    then virtnet's nftables tables hold its networks too, which this one's records cannot
    tell from orphans, and the collector leaves the tables alone."""
    for label in labelled.values():
        owner = parse_label(label)
        if owner is not None and owner.scope != records.scope:
            log.info("another virtnet (scope %s) shares this namespace", owner.scope)
            return True
    return False


def remove(services: Services, orphans: list[Orphan]) -> list[str]:
    """Remove ``orphans`` (as :func:`find` returned them); returns the problems met."""
    problems = []
    chains = [o for o in orphans if o.kind == "nft-chain"]
    if chains:
        try:
            _remove_chains(services, chains)
        except Exception as exc:
            problems.append(f"nftables chains: {exc}")
    for family in ("bridge", "inet"):
        elements = [o for o in orphans if o.kind == "nft-element" and o.where == family]
        if elements:
            _remove_elements(services, family, elements)
    if chains or any(o.kind == "nft-element" for o in orphans):
        services.firewall.drop_unused_tables()
    for orphan in orphans:
        try:
            if orphan.kind == "link":
                services.netlink.delete(orphan.name, orphan.owner)
            elif orphan.kind == "ovs-bridge":
                services.ovsdb.delete_bridge(orphan.name, orphan.owner)
            elif orphan.kind == "ovs-port":
                services.ovsdb.delete_port(orphan.where, orphan.name, orphan.owner)
            elif orphan.kind == "dnsmasq":
                _remove_dnsmasq(services, Path(orphan.name))
            elif orphan.kind == "dnsmasq-member":
                from virtnet.services.dnsmasq_group import DnsmasqGroup

                files = DnsmasqFiles(Path(orphan.where), orphan.name)
                services.dnsmasq.wait(DnsmasqGroup(services.dnsmasq).leave(files))
        except Exception as exc:
            problems.append(f"{orphan.line()}: {exc}")
    return problems


def _ovs(services: Services, records: Records) -> list[Orphan]:
    from virtnet.services.ovsdb import db_remote

    remote = db_remote()
    if remote.startswith("unix:") and not Path(remote[5:]).exists():
        return []  # no Open vSwitch here: nothing of ours in it either
    found = []
    for name, (kind, label, bridge) in sorted(services.ovsdb.labelled().items()):
        if records.owns(parse_label(label)):
            continue
        if kind == "port" and name == bridge:
            continue  # a bridge's own local port goes with the bridge
        found.append(Orphan(f"ovs-{kind}", name, label, bridge if kind == "port" else ""))
    gone = {o.name for o in found if o.kind == "ovs-bridge"}
    return [o for o in found if not (o.kind == "ovs-port" and o.where in gone)]


#: Chains of each network that virtnet made before its networks became set elements:
#: nothing jumps to them any more (the shared chains were refilled), so they are orphans.
_LEGACY_CHAINS = ("from", "to", "host", "in")


def _chains(table: list[dict[str, Any]], records: Records) -> list[Orphan]:
    """Chains of a network no record has (and the chains of before networks were
    elements), from virtnet's inet table as libnftables' JSON lists it."""
    keys = {uuid.replace("-", "") for uuid in records.networks}
    found = []
    for item in table:
        chain = item.get("chain")
        if not chain:
            continue
        match = _CHAIN.fullmatch(str(chain.get("name", "")))
        if match and (match[1] not in keys or match[2] in _LEGACY_CHAINS):
            found.append(Orphan("nft-chain", str(chain["name"]), match[1], "inet"))
    return found


def _network_elements(table: list[dict[str, Any]], records: Records) -> list[Orphan]:
    """Elements of the network sets whose comment names a network no record has."""
    from virtnet.services.firewall_rules import SET_TYPES

    keys = {uuid.replace("-", "") for uuid in records.networks}
    found = []
    for item in table:
        collection = item.get("set")
        if not collection or collection.get("name") not in SET_TYPES:
            continue
        types = collection.get("type")
        types = types if isinstance(types, list) else [types]
        for elem in collection.get("elem", []):
            comment = elem.get("elem", {}).get("comment", "") if isinstance(elem, dict) else ""
            match = _COMMENT.fullmatch(str(comment))
            if match and match[1] not in keys:
                text = _element_text(element_parts(elem), types)
                found.append(Orphan("nft-element", f"{collection['name']} {{ {text} }}",
                                    match[1], "inet"))  # fmt: skip
    return found


def _element_text(parts: list[Any], types: list[str]) -> str:
    """An element's key in nft's words (what ``delete element`` takes)."""
    return " . ".join(
        (json.dumps(part) if kind == "ifname" else part) if isinstance(part, str) else _key(part)
        for part, kind in zip(parts, types, strict=False)
    )


def _remove_chains(services: Services, chains: list[Orphan]) -> None:
    """Map entries that jump to the chains first (a referenced chain cannot go), then the
    chains; one transaction."""
    from virtnet.services.firewall_rules import INET, TABLE

    names = {o.name for o in chains}
    statements = []
    for item in services.nft.query(f"list table inet {TABLE}"):
        mapping = item.get("map")
        if not mapping:
            continue
        for key, verdict in _elements(mapping):
            target = _jump_target(verdict)
            if target in names:
                statements.append(f"delete element {INET} {mapping['name']} {{ {key} }}")
    for name in sorted(names):
        statements += [f"flush chain {INET} {name}", f"delete chain {INET} {name}"]
    services.nft.run("\n".join(statements), "virtnet's orphaned chains")


def element_parts(elem: Any) -> list[Any]:
    """The key of a set or map element as libnftables' JSON gives it, as its parts: a bare
    value, a concatenation (``{"concat": [...]}``), a map entry (``[key, value]``), and any
    of these wrapped with the element's own counter or timeout (``{"elem": {"val": ...,
    "counter": ...}}``; the sets that count guard drops per port have those)."""
    key = elem[0] if isinstance(elem, list) else elem
    if isinstance(key, dict) and "elem" in key:
        key = key["elem"].get("val")
    return list(key["concat"]) if isinstance(key, dict) and "concat" in key else [key]


def _stale_elements(
    table: list[dict[str, Any]], family: str, links: set[str], macs: frozenset[str]
) -> list[Orphan]:
    """Set and map entries of virtnet's ``family`` table keyed by a port that is gone: an
    interface name no link has, or a MAC no live port has (a namesake link made later must
    not inherit a dead port's guard)."""
    found = []
    for item in table:
        collection = item.get("set") or item.get("map")
        if not collection or not collection.get("elem"):
            continue
        types = collection.get("type")
        types = types if isinstance(types, list) else [types]
        if types[0] not in ("ifname", "ether_addr") or _by_network(family, collection["name"]):
            continue
        for elem in collection["elem"]:
            parts = element_parts(elem)
            first = parts[0]
            gone = first not in links if types[0] == "ifname" else first not in macs
            if gone:
                text = " . ".join(
                    json.dumps(part) if kind == "ifname" else str(part)
                    for part, kind in zip(parts, types, strict=False)
                )
                found.append(Orphan("nft-element", f"{collection['name']} {{ {text} }}",
                                    str(first), family))  # fmt: skip
    return found


def _by_network(family: str, name: str) -> bool:
    """Sets whose elements are a network's, known by their comment (the links of a routed
    network without a bridge are a port's too: a link gone leaves its element stale)."""
    from virtnet.services.firewall_rules import SET_TYPES

    return family == "inet" and name in SET_TYPES and name != "links"


def _remove_elements(services: Services, family: str, elements: list[Orphan]) -> None:
    from virtnet.services.firewall_rules import TABLE

    statements = [f"delete element {family} {TABLE} {o.name}" for o in elements]
    if not services.nft.try_run("\n".join(statements)):
        for statement in statements:  # one already gone: the rest one by one
            services.nft.try_run(statement)


def _elements(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for elem in mapping.get("elem", []):
        if isinstance(elem, list) and len(elem) == 2:
            out.append((_key(elem[0]), elem[1]))
    return out


def _key(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    if isinstance(value, dict) and "elem" in value:
        return _key(value["elem"]["val"])
    if isinstance(value, str):
        return json.dumps(value)  # an interface name: quoted
    return str(value)


def _jump_target(verdict: Any) -> str | None:
    if isinstance(verdict, dict):
        for kind in ("jump", "goto"):
            if kind in verdict:
                return str(verdict[kind]["target"])
    return None


def _remove_dnsmasq(services: Services, directory: Path) -> None:
    files = DnsmasqFiles(directory)
    services.dnsmasq.stop(files)  # only a dnsmasq whose command line names this directory
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(directory)


__all__ = ["Orphan", "Records", "find", "remove"]
