"""A guest's logical switch port: its address, port security, groups and bandwidth, in one
transaction that claims its addresses in the network's address set (:mod:`.addresses`)."""

from __future__ import annotations

import ipaddress
from typing import Any

from virtnet.errors import Conflict, OperationFailed
from virtnet.model.network import Bandwidth, Network
from virtnet.ownership import OVS_OWNER_KEY, owns
from virtnet.services.ovsdb_rpc import (
    Op,
    OvsdbRpc,
    by_uuid,
    expect,
    insert,
    map_values,
    mutate,
    named,
    omap,
    oset,
    ref,
    set_values,
)
from virtnet_ovn import addresses
from virtnet_ovn.nb import (
    CHASSIS_KEY,
    DB,
    LIVE_KEY,
    NETWORK_KEY,
    groups_of,
    ids,
    ipv4s,
    owned,
    the_switch,
)

#: Plugs on one network from several hosts at once choose again this often.
ATTEMPTS = 8


def dhcp_options_of(nb: OvsdbRpc, network: str) -> dict[str, str]:
    """Subnet (cidr) -> the DHCP_Options row serving it."""
    rows = nb.select(DB, "DHCP_Options", owned(network, "dhcp"), ["cidr"])
    return {str(r["cidr"]): str(r["_uuid"]) for r in rows}


def create_port(
    db: OvsdbRpc,
    net: Network,
    port: str,
    mac: str,
    declared: list[str],
    guarded: bool,
    isolated: bool,
    chassis: str,
    bandwidth: Bandwidth | None = None,
    label: str | None = None,
) -> list[str]:
    """The guest's logical switch port with its addresses: ``declared``, else the one
    reserved for its MAC, else the next free one of the DHCP range; returns them (with the
    SLAAC addresses it will form). Retried when another host took the address first; a
    network stopped meanwhile fails with the line that says so."""
    assert net.uuid is not None
    u = net.uuid
    fixed = list(declared) or reservation(net, mac)
    switch, live = running_switch(db, net)
    dhcp = dhcp_options_of(db, u)
    groups = groups_of(net, isolated, guarded)
    taken: set[ipaddress.IPv4Address] | None = None  # read only after a failed try
    for _attempt in range(ATTEMPTS):
        book = addresses.read_book(db, u)
        rebuilt = addresses.held_by_ports(db, u) if book.row is None else None
        chosen, cursor = list(fixed), None
        if not fixed:
            free = next(addresses.candidates(net, book.cursor, taken or rebuilt or set()), None)
            if free is None and any(ip.dhcp and ip.dhcp.ranges for ip in ipv4s(net)):
                raise OperationFailed(f"network {net.name!r}: its DHCP range is full")
            chosen = [free] if free else []
            cursor = addresses.next_after(net, free) if free else None
        claim = [a for a in chosen if ipaddress.ip_address(a).version == 4]
        every = chosen + slaac_addresses(net, mac, chosen)
        row = " ".join([mac, *every])
        subnet = subnet_of(net, chosen[0]) if chosen else None
        claiming = addresses.claim_ops(book, claim, cursor, rebuilt)
        try:
            add_port(db, u, port, row, guarded, chassis, dhcp.get(subnet or ""), groups, switch,
                     claiming, bandwidth, label, live)  # fmt: skip
        except Conflict:
            # the network may have stopped from another host (that is the error to report,
            # not a lost race), or started again with another switch
            switch, live = running_switch(db, net)
            dhcp = dhcp_options_of(db, u)
            taken = addresses.held(db, u)
            clash = sorted(str(a) for a in taken if str(a) in claim)
            if fixed and clash:
                raise OperationFailed(
                    f"address {clash[0]} is held by another port of network {net.name!r}",
                    subject="port/ip",
                ) from None
            continue  # another host took it, or made the set first: choose again
        return every
    raise Conflict(f"network {net.name!r}: {ATTEMPTS} hosts took the address chosen first")


def running_switch(db: OvsdbRpc, net: Network) -> tuple[str, str]:
    """The network's switch (its uuid) and its live definition, which a plug's transaction
    expects unchanged: a port must not land on a network stopped (its switch kept by its
    definition) between the plug's reads and its write."""
    assert net.uuid is not None
    row = the_switch(db, net.uuid)
    live = row["external_ids"].get(LIVE_KEY)
    if live is None:
        raise OperationFailed(
            f"network {net.name!r} is not running in OVN (stopped from another host?)"
        )
    return str(row["_uuid"]), str(live)


def reservation(net: Network, mac: str) -> list[str]:
    """The address a ``<dhcp><host mac=...>`` reserves for ``mac``."""
    for ip in net.ips:
        for host in ip.dhcp.hosts if ip.dhcp else []:
            if host.mac and host.ip and host.mac.lower() == mac.lower():
                return [host.ip]
    return []


def add_port(
    nb: OvsdbRpc,
    network: str,
    port: str,
    addresses: str,
    guarded: bool,
    chassis: str,
    dhcp: str | None,
    groups: list[str],
    switch: str,
    claim: list[Op],
    bandwidth: Bandwidth | None = None,
    label: str | None = None,
    live: str | None = None,
) -> None:
    """The guest's logical switch port on ``switch`` (its row's uuid), in one transaction with
    ``claim`` (:func:`virtnet_ovn.addresses.claim_ops`: it fails whole if another port holds
    the address); fails too if the switch is gone, or, given its ``live`` definition as read,
    if that changed (the network stopped meanwhile)."""
    row: dict[str, Any] = {
        "name": port,
        "addresses": oset([addresses]),
        "port_security": oset([addresses] if guarded else []),
        # only this chassis may bind it: another chassis claiming the iface-id gets nothing
        "options": omap({"requested-chassis": chassis}),
        "external_ids": ids(network, "port", port, label, **{CHASSIS_KEY: chassis}),
    }
    if dhcp:
        row["dhcpv4_options"] = ref(dhcp)
    where = by_uuid(switch)
    still = [["external_ids", "includes", omap({LIVE_KEY: live})]] if live is not None else []
    ops = [
        *claim,
        expect("Logical_Switch", [*where, *still], [{}], []),  # it is still there (and runs)
        insert("Logical_Switch_Port", row, "lsp"),
        mutate("Logical_Switch", where, ["ports", "insert", oset([named("lsp")])]),
    ]
    for group in groups:  # isolation, the nat guard
        where = [["name", "==", group]]
        ops.append(mutate("Port_Group", where, ["ports", "insert", oset([named("lsp")])]))
    limits = _qos_ops(network, port, bandwidth, label)
    if limits:
        ops += limits
        handles = oset(named(f"qos{index}") for index in range(len(limits)))
        ops.append(mutate("Logical_Switch", by_uuid(switch), ["qos_rules", "insert", handles]))
    nb.transact(DB, ops)


def _qos_ops(network: str, port: str, bandwidth: Bandwidth | None, label: str | None) -> list[Op]:
    """A port's ``<bandwidth>`` as OVN QoS meters: ``outbound`` (what the guest sends) where
    it enters, ``inbound`` (toward it) where it leaves. libvirt counts kilobytes (per second);
    OVN kilobits."""
    if bandwidth is None:
        return []
    ops: list[Op] = []
    for rate, direction, match in (
        (bandwidth.outbound, "from-lport", f'inport == "{port}"'),
        (bandwidth.inbound, "to-lport", f'outport == "{port}"'),
    ):
        if rate is None or not rate.average:
            continue
        limit = {"rate": rate.average * 8, **({"burst": rate.burst * 8} if rate.burst else {})}
        row = {
            "priority": 2000,
            "direction": direction,
            "match": match,
            "bandwidth": omap(limit),
            "external_ids": ids(network, "qos", port, label),
        }
        ops.append(insert("QoS", row, f"qos{len(ops)}"))
    return ops


def delete_port(nb: OvsdbRpc, port: str, label: str | None) -> None:
    """Take the port out of its switch (OVSDB then drops the unreferenced row), with its
    bandwidth meters; a port that is gone, or not the one the label names
    (:func:`virtnet.ownership.owns`), is left alone."""
    rows = nb.select(
        DB, "Logical_Switch_Port", [["name", "==", port]], ["external_ids", "addresses"]
    )
    marks = map_values(rows[0]["external_ids"]) if rows else {}
    found = marks.get(OVS_OWNER_KEY)
    if rows and owns(label, found):
        member = oset([ref(rows[0]["_uuid"])])
        where = [["ports", "includes", member]]
        its = [["external_ids", "includes", omap({OVS_OWNER_KEY: str(found)})]]
        limits = oset(ref(q["_uuid"]) for q in nb.select(DB, "QoS", its, []))
        change = mutate(
            "Logical_Switch", where, ["ports", "delete", member], ["qos_rules", "delete", limits]
        )
        held = [w for entry in set_values(rows[0]["addresses"]) for w in str(entry).split()[1:]]
        network = str(marks.get(NETWORK_KEY, ""))
        nb.transact(DB, [change, *(addresses.release_ops(network, held) if network else [])])


def slaac_addresses(net: Network, mac: str, have: list[str]) -> list[str]:
    """The addresses the guest forms itself from router advertisements (EUI-64 in each /64 of
    the network it has none in): listed on its port, so port security lets them through and
    OVN answers neighbour solicitations for them."""
    from virtnet.services.guard_rules import eui64_address

    held = [ipaddress.ip_address(a) for a in have]
    return [
        eui64_address(str(ip.subnet), mac)
        for ip in net.ips
        if ip.version == 6 and ip.prefixlen == 64 and not any(a in ip.subnet for a in held)
    ]


def subnet_of(net: Network, address: str) -> str | None:
    value = ipaddress.ip_address(address)
    for ip in net.ips:
        if value in ip.subnet:
            return str(ip.subnet)
    return None
