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
=================  ==================================================================
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

from virtnet.errors import InvalidInput, OperationFailed
from virtnet.model.network import IP, Bandwidth, ForwardMode, Network
from virtnet.ownership import OVS_OWNER_KEY, Owner
from virtnet.services.ovsdb_rpc import (
    Op,
    OvsdbRpc,
    Where,
    by_uuid,
    delete,
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
from virtnet_ovn.uplink import Uplink, parse_uplink

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


def _short(uuid: str) -> str:
    return uuid.replace("-", "")[:12]


def router_port_name(uuid: str) -> str:
    return f"vn-{_short(uuid)}-lrp"


def isolation_group(uuid: str) -> str:
    return f"vn_{uuid.replace('-', '')}_isolated"  # Port_Group names are identifiers


def guests_group(uuid: str) -> str:
    return f"vn_{uuid.replace('-', '')}_guests"


def guarded_group(uuid: str) -> str:
    return f"vn_{uuid.replace('-', '')}_guarded"


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
    """The network's switch with its ports (what a port's transaction checks against)."""
    found = switches(nb, network, ports=True)
    if not found:
        raise OperationFailed(
            f"network {network} has no logical switch in the OVN northbound database "
            "(destroyed from another host?)"
        )
    return found[0]


def taken_addresses(nb: OvsdbRpc, network: str) -> set[ipaddress.IPv4Address]:
    rows = nb.select(DB, "Logical_Switch_Port", owned(network), ["addresses"])
    taken = set()
    for row in rows:
        for entry in set_values(row["addresses"]):
            for word in str(entry).split()[1:]:
                try:
                    address = ipaddress.ip_address(word)
                except ValueError:
                    continue
                if isinstance(address, ipaddress.IPv4Address):
                    taken.add(address)
    return taken


# --- a network's start and stop -----------------------------------------------------------
def _ipv4(net: Network) -> list[IP]:
    return [ip for ip in net.ips if ip.version == 4]


def has_router(net: Network) -> bool:
    return net.mode in (ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.OPEN) and bool(net.ips)


def start_ops(net: Network, switch: dict[str, Any] | None, token: str = "1") -> list[Op]:
    """One transaction that gives the network (whose ``switch`` row was read, or is made here
    when None) its services: DHCP, DNS, router, uplink, isolation group.

    It fails whole (``Conflict``) if another host got there first: the switch's external_ids
    must still be what was read (this transaction marks them ``STARTING_KEY`` = ``token``),
    and a new switch's name must still be free among virtnet's networks."""
    assert net.uuid is not None
    u = net.uuid
    ops: list[Op] = []
    if switch is None:
        ls: list[Any] = named("ls")
        taken_name = [["external_ids", "includes", omap({ROLE_KEY: "network", NAME_KEY: net.name})]]
        labels = ids(u, "network", **{NAME_KEY: net.name, STARTING_KEY: token})
        ops.append(expect("Logical_Switch", taken_name, [], ["name"]))
        ops.append(
            insert("Logical_Switch", {"name": switch_name(net), "external_ids": labels}, "ls")
        )
    else:
        ls = ref(switch["_uuid"])
        seen = [{"external_ids": omap(switch["external_ids"])}]
        ops.append(expect("Logical_Switch", by_uuid(switch["_uuid"]), seen, ["external_ids"]))
        ops.append(
            mutate("Logical_Switch", by_uuid(switch["_uuid"]),
                   ["external_ids", "insert", omap({STARTING_KEY: token})])
        )  # fmt: skip
    ports: list[Any] = []
    dns: list[Any] = []
    router_mac = net.mac or derived_mac(u, "lrp")
    for index, ip in enumerate(_ipv4(net)):
        if ip.dhcp is not None:
            row = {"cidr": str(ip.subnet), "options": omap(_dhcp_options(net, ip, router_mac)),
                   "external_ids": ids(u, "dhcp")}  # fmt: skip
            ops.append(insert("DHCP_Options", row, f"dhcp{index}"))
    if net.dns is not None and net.dns.hosts:
        records: dict[str, str] = {}
        for host in net.dns.hosts:
            for name in host.hostnames:
                records[name.lower()] = " ".join(filter(None, [records.get(name.lower()), host.ip]))
        ops.append(insert("DNS", {"records": omap(records), "external_ids": ids(u, "dns")}, "dns"))
        dns.append(named("dns"))
    uplink = parse_uplink(net)
    if has_router(net):
        ops += _router_ops(net, router_mac, uplink, ports)
    elif uplink is not None:  # bridge mode: the guests' switch is on the provider network
        if net.mode is not ForwardMode.BRIDGE:
            raise InvalidInput(
                f"an uplink serves nat, route, open or bridge networks, not {net.mode.value}",
                subject="network/metadata/ovn:uplink",
            )
        ops.append(_localnet(u, f"vn-{_short(u)}-ln", uplink.physnet, "ln"))
        ports.append(named("ln"))
    if _isolates(net):
        group = isolation_group(u)
        # at the sender's inport, to the group's own addresses (OVN keeps $GROUP_ip4/_ip6
        # from the ports' addresses): not in the egress stage, where OVN's ARP responder and
        # DHCP replies come back to their own inport and would be dropped too
        match = f"inport == @{group} && (ip4.dst == ${group}_ip4 || ip6.dst == ${group}_ip6)"
        acl = {"direction": "from-lport", "priority": 2000, "action": "drop", "match": match,
               "external_ids": ids(u, "isolation")}  # fmt: skip
        ops.append(insert("ACL", acl, "isolation"))
        pg = {
            "name": group,
            "acls": oset([named("isolation")]),
            "external_ids": ids(u, "isolation"),
        }
        ops.append(insert("Port_Group", pg))
    if net.mode is ForwardMode.NAT:
        ops += _nat_guard_ops(net)
    ops += _server_guard_ops(u)
    mutations = []
    if ports:
        mutations.append(["ports", "insert", oset(ports)])
    if dns:
        mutations.append(["dns_records", "insert", oset(dns)])
    if mutations:
        ops.append(mutate("Logical_Switch", [["_uuid", "==", ls]], *mutations))
    return ops


def _dhcp_options(net: Network, ip: IP, router_mac: str) -> dict[str, str]:
    """OVN's native DHCPv4 for one subnet: what dnsmasq would have said."""
    assert ip.dhcp is not None
    lease = next((r.lease for r in ip.dhcp.ranges if r.lease), None)
    options = {
        "server_id": ip.address,
        "server_mac": router_mac,
        "lease_time": str(lease.seconds if lease and lease.seconds else DEFAULT_LEASE),
    }
    if has_router(net):
        options["router"] = ip.address
    if net.mtu:
        options["mtu"] = str(net.mtu)
    if net.domain is not None and net.domain.name:
        options["domain_name"] = json.dumps(net.domain.name)
    if net.dns is not None and net.dns.hosts:
        options["dns_server"] = ip.address
    return options


def _nat_guard_ops(net: Network) -> list[Op]:
    """libvirt's nat mode lets guests out and nothing new in: OVN's SNAT alone would route
    an outside host's packets to a guest's own address (a route to the subnet via the
    gateway is all it takes). Stateful ACLs on the group of the network's guest ports:
    what a guest starts, and its replies, pass (conntrack); from the subnet itself, all
    passes; any other new IPv4 connection toward a guest is dropped. IPv6 is routed, not
    NATed, in libvirt's nat networks, and stays open as there."""
    assert net.uuid is not None
    u = net.uuid
    group = guests_group(u)
    subnets = ", ".join(str(ip.subnet) for ip in _ipv4(net))
    rules = [
        ("from-lport", 1001, f"inport == @{group} && ip4", "allow-related"),
        ("to-lport", 1001, f"outport == @{group} && ip4 && ip4.src == {{{subnets}}}",
         "allow-related"),
        ("to-lport", 1000, f"outport == @{group} && ip4", "drop"),
    ]  # fmt: skip
    ops: list[Op] = []
    for index, (direction, priority, match, action) in enumerate(rules):
        acl = {"direction": direction, "priority": priority, "match": match, "action": action,
               "external_ids": ids(u, "nat-guard")}  # fmt: skip
        ops.append(insert("ACL", acl, f"natacl{index}"))
    acls = oset(named(f"natacl{index}") for index in range(len(rules)))
    pg = {"name": group, "acls": acls, "external_ids": ids(u, "nat-guard")}
    ops.append(insert("Port_Group", pg))
    return ops


def _server_guard_ops(u: str) -> list[Op]:
    """Port security checks a guest's source addresses, not what it claims to be: a guest
    could still answer others' DHCP (its own address as the source) or advertise itself as
    the IPv6 router. OVN answers DHCP requests itself, so no guest needs to send DHCP or
    DHCPv6 server replies or router advertisements: a guarded port's are dropped where they
    enter (a router guest, plugged with --no-spoof-check, is not in the group)."""
    group = guarded_group(u)
    match = f"inport == @{group} && (udp.src == 67 || udp.src == 547 || icmp6.type == 134)"
    acl = {"direction": "from-lport", "priority": 2001, "action": "drop", "match": match,
           "external_ids": ids(u, "server-guard")}  # fmt: skip
    pg = {"name": group, "acls": oset([named("serverguard")]),
          "external_ids": ids(u, "server-guard")}  # fmt: skip
    return [insert("ACL", acl, "serverguard"), insert("Port_Group", pg)]


def groups_of(net: Network, isolated: bool, guarded: bool) -> list[str]:
    """The port groups a guest's port of ``net`` joins."""
    assert net.uuid is not None
    groups = [guests_group(net.uuid)] if net.mode is ForwardMode.NAT else []
    groups += [guarded_group(net.uuid)] if guarded else []
    return groups + ([isolation_group(net.uuid)] if isolated else [])


def _isolates(net: Network) -> bool:
    return bool(net.port_isolated) or any(g.port_isolated for g in net.portgroups)


def _localnet(u: str, name: str, physnet: str, handle: str) -> Op:
    """A switch's port onto provider network ``physnet`` (a chassis's bridge mapping)."""
    return _special_port(u, name, "localnet", "unknown", {"network_name": physnet}, handle)


def _router_port(u: str, name: str, lrp: str, handle: str) -> Op:
    """A switch's port toward router port ``lrp``."""
    return _special_port(u, name, "router", "router", {"router-port": lrp}, handle)


def _special_port(
    u: str, name: str, kind: str, addresses: str, options: dict[str, str], handle: str
) -> Op:
    role = "router-port" if kind == "router" else kind
    row = {"name": name, "type": kind, "addresses": oset([addresses]), "options": omap(options),
           "external_ids": ids(u, role)}  # fmt: skip
    return insert("Logical_Switch_Port", row, handle)


def _router_ops(net: Network, mac: str, uplink: Uplink | None, switch_ports: list[Any]) -> list[Op]:
    assert net.uuid is not None
    u = net.uuid
    lrp = router_port_name(u)
    ops: list[Op] = []
    lrp_row: dict[str, Any] = {
        "name": lrp,
        "mac": mac,
        "networks": oset(str(ip.interface) for ip in net.ips),
        "external_ids": ids(u, "router"),
    }
    ipv6 = [ip for ip in net.ips if ip.version == 6]
    if ipv6:  # router advertisements (SLAAC): what radvd-by-dnsmasq did on a host bridge
        ra = {"address_mode": "slaac", "send_periodic": "true"}
        if net.mtu:
            ra["mtu"] = str(net.mtu)
        lrp_row["ipv6_ra_configs"] = omap(ra)
    ops.append(insert("Logical_Router_Port", lrp_row, "lrp"))
    ops.append(_router_port(u, f"vn-{_short(u)}-rp", lrp, "rp"))
    switch_ports.append(named("rp"))
    router_ports: list[Any] = [named("lrp")]
    nat: list[Any] = []
    routes: list[Any] = []
    if uplink is not None:
        if uplink.address is None or not uplink.chassis:
            raise InvalidInput(
                "a router's uplink needs address= and chassis= (the gateway chassis)",
                subject="network/metadata/ovn:uplink",
            )
        gw = f"vn-{_short(u)}-gw"
        gateways = []
        for rank, chassis in enumerate(uplink.chassis):  # the first is preferred
            row = {"name": f"{gw}-{chassis}", "chassis_name": chassis, "priority": 100 - rank,
                   "external_ids": ids(u, "router")}  # fmt: skip
            ops.append(insert("Gateway_Chassis", row, f"gc{rank}"))
            gateways.append(named(f"gc{rank}"))
        gw_row = {"name": gw, "mac": derived_mac(u, "gw"), "networks": oset([str(uplink.address)]),
                  "gateway_chassis": oset(gateways), "external_ids": ids(u, "router")}  # fmt: skip
        ops.append(insert("Logical_Router_Port", gw_row, "gw"))
        router_ports.append(named("gw"))
        ops.append(_localnet(u, f"vn-{_short(u)}-upln", uplink.physnet, "upln"))
        ops.append(_router_port(u, f"vn-{_short(u)}-uprp", gw, "uprp"))
        up_row = {"name": f"vn-{net.name}-uplink", "ports": oset([named("upln"), named("uprp")]),
                  "external_ids": ids(u, "uplink")}  # fmt: skip
        ops.append(insert("Logical_Switch", up_row))
        if uplink.gateway is not None:
            ops.append(_route(u, "0.0.0.0/0", str(uplink.gateway), "default"))
            routes.append(named("default"))
        if net.mode is ForwardMode.NAT:
            external = uplink.address.ip
            if net.forward is not None and net.forward.nat and net.forward.nat.address_start:
                external = ipaddress.IPv4Address(net.forward.nat.address_start)
            for index, ip in enumerate(_ipv4(net)):
                row = {"type": "snat", "external_ip": str(external),
                       "logical_ip": str(ip.subnet), "external_ids": ids(u, "router")}  # fmt: skip
                ops.append(insert("NAT", row, f"snat{index}"))
                nat.append(named(f"snat{index}"))
    for index, route in enumerate(net.routes):
        prefix = (
            route.prefix if route.prefix is not None else (64 if route.family == "ipv6" else 24)
        )
        destination = ipaddress.ip_network(f"{route.address}/{prefix}", strict=False)
        ops.append(_route(u, str(destination), route.gateway, f"route{index}"))
        routes.append(named(f"route{index}"))
    router = {"name": router_name(net), "ports": oset(router_ports), "nat": oset(nat),
              "static_routes": oset(routes), "external_ids": ids(u, "router")}  # fmt: skip
    ops.append(insert("Logical_Router", router))
    return ops


def _route(u: str, prefix: str, nexthop: str, handle: str) -> Op:
    row = {"ip_prefix": prefix, "nexthop": nexthop, "external_ids": ids(u, "router")}
    return insert("Logical_Router_Static_Route", row, handle)


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
    ops += [delete(t, owned(network)) for t in ("Logical_Router", "DHCP_Options", "Port_Group")]
    ops.append(delete("Logical_Switch", owned(network, "uplink")))
    ops.append(delete("DNS", owned(network)))
    nb.transact(DB, ops)


# --- ports --------------------------------------------------------------------------------
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


def delete_port(nb: OvsdbRpc, port: str, label: str) -> None:
    """Take the port out of its switch (OVSDB then drops the unreferenced row); a port that is
    gone, or that is not the one the label names, is left alone."""
    mine: Where = [["name", "==", port], ["external_ids", "includes", omap({OVS_OWNER_KEY: label})]]
    rows = nb.select(DB, "Logical_Switch_Port", mine, [])
    if rows:
        member = oset([ref(rows[0]["_uuid"])])
        where = [["ports", "includes", member]]
        its = [["external_ids", "includes", omap({OVS_OWNER_KEY: label})]]
        limits = oset(ref(q["_uuid"]) for q in nb.select(DB, "QoS", its, []))
        change = mutate(
            "Logical_Switch", where, ["ports", "delete", member], ["qos_rules", "delete", limits]
        )
        nb.transact(DB, [change])


def free_addresses(net: Network, taken: set[ipaddress.IPv4Address]) -> Iterator[str]:
    """Addresses of the network's DHCP ranges nobody holds, lowest first."""
    reserved = {ipaddress.IPv4Address(h.ip) for ip in _ipv4(net) if ip.dhcp
                for h in ip.dhcp.hosts if h.ip}  # fmt: skip
    own = {ipaddress.IPv4Address(ip.address) for ip in _ipv4(net)}
    for ip in _ipv4(net):
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
