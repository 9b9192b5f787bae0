"""virtnet's networks as rows of OVN's northbound database, each change one transaction.

Every row virtnet makes carries, in ``external_ids``, the network's uuid
(:data:`NETWORK_KEY`), its role (:data:`ROLE_KEY`) and virtnet's ownership label
(``virtnet-owner``, without a host scope: the rows belong to the network, not to a host). A
network's rows are found by those keys, never by name, so a foreign logical switch or router
with the same name in the same database is never read or touched.

=================  ==================================================================
role               rows
=================  ==================================================================
``network``        the network's logical switch; also its definition and running state
``port``           a guest's logical switch port (name: the port's uuid = ``iface-id``)
``router-port``    the switch's port toward the network's router
``localnet``       a switch's port onto the provider network (bridge mode, the uplink)
``router``         the logical router of a nat, route or open network
``uplink``         the router's switch on the provider network
``dhcp``           DHCP_Options of one subnet (OVN's native DHCP)
``dns``            the network's DNS records (answered by ovn-controller)
``isolation``      the Port_Group of isolated ports, with its drop ACL
``nat-guard``      the Port_Group of a nat network's guest ports, with its stateful ACLs
``server-guard``   the Port_Group of guarded ports: no DHCP server replies or RAs from them
``qos``            a port's bandwidth limits (QoS rows of the switch), labelled with the port
``addresses``      the Address_Set of the IPv4 addresses its ports hold (:mod:`.addresses`)
=================  ==================================================================
"""

from __future__ import annotations

import hashlib
from typing import Any

from virtnet.errors import OperationFailed
from virtnet.model.network import IP, ForwardMode, Network
from virtnet.ownership import OVS_OWNER_KEY, Owner
from virtnet.services.ovsdb_rpc import (
    Op,
    OvsdbRpc,
    by_uuid,
    delete,
    expect,
    map_values,
    mutate,
    omap,
    oset,
    ref,
    set_values,
)

DB = "OVN_Northbound"
NETWORK_KEY = "virtnet-network"
ROLE_KEY = "virtnet-role"
NAME_KEY = "virtnet-name"
XML_KEY = "virtnet-xml"  # the persistent definition (absent: a transient network)
AUTOSTART_KEY = "virtnet-autostart"
LIVE_KEY = "virtnet-live"  # the live definition while the network runs
INFO_KEY = "virtnet-info"  # its status (JSON), with its start's undo records
STARTED_KEY = "virtnet-started"
STARTING_KEY = "virtnet-starting"  # set by a start's transaction until its record is written
CHASSIS_KEY = "virtnet-chassis"  # on a port: the chassis it was made for
DEFAULT_LEASE = 3600


def owned(network: str, role: str | None = None) -> list[list[Any]]:
    """The ``where`` clause of the rows of ``network`` (of one role)."""
    keys = {NETWORK_KEY: network, **({ROLE_KEY: role} if role else {})}
    return [["external_ids", "includes", omap(keys)]]


def ids(
    network: str, role: str, port: str | None = None, label: str | None = None, **extra: str
) -> list[Any]:
    """A row's external_ids: the network, the row's role, virtnet's label (``label``: a
    port's, with the scope of the virtnet that plugged it, as its undo checks)."""
    owner = label or Owner(network, port).label
    return omap({NETWORK_KEY: network, ROLE_KEY: role, OVS_OWNER_KEY: owner, **extra})


def switch_name(net: Network) -> str:
    return f"vn-{net.name}"


def router_name(net: Network) -> str:
    return f"vn-{net.name}-router"  # not the switch's name: ovn-trace names datapaths


def short_id(uuid: str) -> str:
    return uuid.replace("-", "")[:12]


def router_port_name(uuid: str) -> str:
    return f"vn-{short_id(uuid)}-lrp"


def isolation_group(uuid: str) -> str:
    return f"vn_{uuid.replace('-', '')}_isolated"  # Port_Group names are identifiers


def guests_group(uuid: str) -> str:
    return f"vn_{uuid.replace('-', '')}_guests"


def guarded_group(uuid: str) -> str:
    return f"vn_{uuid.replace('-', '')}_guarded"


def address_set_name(uuid: str) -> str:
    return f"vn_{uuid.replace('-', '')}_addresses"


def derived_mac(uuid: str, salt: str) -> str:
    """A stable locally administered MAC for a router port virtnet names."""
    digest = hashlib.sha256(f"{uuid}/{salt}".encode()).digest()
    return "0a:" + ":".join(f"{b:02x}" for b in digest[:5])


# --- reading ------------------------------------------------------------------------------
def switches(
    nb: OvsdbRpc, network: str | None = None, *, name: str | None = None, ports: bool = False
) -> list[dict[str, Any]]:
    """The networks' switches (all of virtnet's, one network's by uuid or by name), picked by
    the server; external_ids decoded, and their ports' uuids only when asked (a listing
    must not carry every port of every network)."""
    keys = {ROLE_KEY: "network"}
    if network:
        keys[NETWORK_KEY] = network
    if name:
        keys[NAME_KEY] = name
    columns = ["name", "external_ids", *(["ports"] if ports else [])]
    rows = nb.select(DB, "Logical_Switch", [["external_ids", "includes", omap(keys)]], columns)
    for row in rows:
        row["external_ids"] = map_values(row["external_ids"])
        if ports:
            row["ports"] = set_values(row["ports"])
    return [r for r in rows if r["external_ids"].get(OVS_OWNER_KEY, "").startswith("virtnet/")]


def the_switch(nb: OvsdbRpc, network: str) -> dict[str, Any]:
    """The network's switch (its row, not its ports)."""
    found = switches(nb, network)
    if not found:
        raise OperationFailed(
            f"network {network} has no logical switch in the OVN northbound database "
            "(destroyed from another host?)"
        )
    return found[0]


# --- a network's start and stop -----------------------------------------------------------
def ipv4s(net: Network) -> list[IP]:
    return [ip for ip in net.ips if ip.version == 4]


def has_router(net: Network) -> bool:
    return net.mode in (ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.OPEN) and bool(net.ips)


def stop(nb: OvsdbRpc, network: str, token: str | None) -> None:
    """Remove what the network's start and its ports made, in one transaction; the switch
    itself too when no definition keeps it.

    Nothing when the network runs (its record goes first: a failed start's undo must not
    stop a network another host runs) or another start (``token``) is under way."""
    found = switches(nb, network)
    ops: list[Op] = []
    if found:
        ls = found[0]
        marks = ls["external_ids"]
        if LIVE_KEY in marks or marks.get(STARTING_KEY, token) != token:
            return
        where = by_uuid(ls["_uuid"])
        ops.append(
            expect("Logical_Switch", where, [{"external_ids": omap(marks)}], ["external_ids"])
        )
        if XML_KEY not in marks:  # transient: the switch goes, and its ports with it
            ops.append(delete("Logical_Switch", where))
        else:
            ports = nb.select(DB, "Logical_Switch_Port", owned(network), [])
            records = nb.select(DB, "DNS", owned(network), [])
            limits = nb.select(DB, "QoS", owned(network), [])
            ops.append(
                mutate("Logical_Switch", where,
                       ["ports", "delete", oset(ref(p["_uuid"]) for p in ports)],
                       ["dns_records", "delete", oset(ref(r["_uuid"]) for r in records)],
                       ["qos_rules", "delete", oset(ref(q["_uuid"]) for q in limits)],
                       ["external_ids", "delete", oset([STARTING_KEY])])
            )  # fmt: skip
    tables = ("Logical_Router", "DHCP_Options", "Port_Group", "Address_Set")
    ops += [delete(t, owned(network)) for t in tables]
    ops.append(delete("Logical_Switch", owned(network, "uplink")))
    ops.append(delete("DNS", owned(network)))
    nb.transact(DB, ops)


def groups_of(net: Network, isolated: bool, guarded: bool) -> list[str]:
    """The port groups a guest's port of ``net`` joins."""
    assert net.uuid is not None
    groups = [guests_group(net.uuid)] if net.mode is ForwardMode.NAT else []
    groups += [guarded_group(net.uuid)] if guarded else []
    return groups + ([isolation_group(net.uuid)] if isolated else [])
