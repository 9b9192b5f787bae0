"""A guest's logical switch port: its address, port security, groups and bandwidth, in a
transaction that fails whole if another host plugged into the switch meanwhile."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

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
)
from virtnet_ovn.nb import CHASSIS_KEY, DB, ids, ipv4s, owned


def dhcp_options_of(nb: OvsdbRpc, network: str) -> dict[str, str]:
    """Subnet (cidr) -> the DHCP_Options row serving it."""
    rows = nb.select(DB, "DHCP_Options", owned(network, "dhcp"), ["cidr"])
    return {str(r["cidr"]): str(r["_uuid"]) for r in rows}


def add_port(
    nb: OvsdbRpc,
    network: str,
    port: str,
    addresses: str,
    guarded: bool,
    chassis: str,
    dhcp: str | None,
    groups: list[str],
    switch: dict[str, Any],
    bandwidth: Bandwidth | None = None,
    label: str | None = None,
) -> None:
    """The guest's logical switch port, in a transaction that fails (``Conflict``, to be
    retried) if another port joined or left the switch since ``switch`` was read: two hosts
    never hand out one address."""
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
    where = by_uuid(switch["_uuid"])
    seen = [{"ports": oset(ref(p) for p in switch["ports"])}]
    ops = [
        expect("Logical_Switch", where, seen, ["ports"]),
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
        ops.append(
            mutate("Logical_Switch", by_uuid(switch["_uuid"]), ["qos_rules", "insert", handles])
        )
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
    rows = nb.select(DB, "Logical_Switch_Port", [["name", "==", port]], ["external_ids"])
    found = map_values(rows[0]["external_ids"]).get(OVS_OWNER_KEY) if rows else None
    if rows and owns(label, found):
        member = oset([ref(rows[0]["_uuid"])])
        where = [["ports", "includes", member]]
        its = [["external_ids", "includes", omap({OVS_OWNER_KEY: str(found)})]]
        limits = oset(ref(q["_uuid"]) for q in nb.select(DB, "QoS", its, []))
        change = mutate(
            "Logical_Switch", where, ["ports", "delete", member], ["qos_rules", "delete", limits]
        )
        nb.transact(DB, [change])


def free_addresses(net: Network, taken: set[ipaddress.IPv4Address]) -> Iterator[str]:
    """Addresses of the network's DHCP ranges nobody holds, lowest first."""
    reserved = {ipaddress.IPv4Address(h.ip) for ip in ipv4s(net) if ip.dhcp
                for h in ip.dhcp.hosts if h.ip}  # fmt: skip
    own = {ipaddress.IPv4Address(ip.address) for ip in ipv4s(net)}
    for ip in ipv4s(net):
        if ip.dhcp is None:
            continue
        for dhcp_range in ip.dhcp.ranges:
            start = int(ipaddress.IPv4Address(dhcp_range.start))
            end = int(ipaddress.IPv4Address(dhcp_range.end))
            for value in range(start, end + 1):
                address = ipaddress.IPv4Address(value)
                if address not in taken and address not in reserved and address not in own:
                    yield str(address)


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
