"""The rows a network's start writes into the northbound database, as one transaction.

Its switch (made here for a transient network), DHCP_Options per subnet, DNS records, the
router with its gateway port, chassis, uplink switch, routes and SNAT, and the port groups
whose ACLs isolate ports, keep a nat network closed to new connections from outside and keep
guests from being DHCP servers or IPv6 routers. :func:`virtnet_ovn.nb.stop` removes them.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from virtnet.errors import InvalidInput
from virtnet.model.network import IP, ForwardMode, Network
from virtnet.services.ovsdb_rpc import (
    Op,
    by_uuid,
    expect,
    insert,
    mutate,
    named,
    omap,
    oset,
    ref,
)
from virtnet_ovn.nb import (
    DEFAULT_LEASE,
    NAME_KEY,
    ROLE_KEY,
    STARTING_KEY,
    derived_mac,
    guarded_group,
    guests_group,
    has_router,
    ids,
    ipv4s,
    isolation_group,
    router_name,
    router_port_name,
    short_id,
    switch_name,
)
from virtnet_ovn.uplink import Uplink, parse_uplink


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
    for index, ip in enumerate(ipv4s(net)):
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
        ops.append(_localnet(u, f"vn-{short_id(u)}-ln", uplink.physnet, "ln"))
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
    subnets = ", ".join(str(ip.subnet) for ip in ipv4s(net))
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
    ops.append(_router_port(u, f"vn-{short_id(u)}-rp", lrp, "rp"))
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
        gw = f"vn-{short_id(u)}-gw"
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
        ops.append(_localnet(u, f"vn-{short_id(u)}-upln", uplink.physnet, "upln"))
        ops.append(_router_port(u, f"vn-{short_id(u)}-uprp", gw, "uprp"))
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
            for index, ip in enumerate(ipv4s(net)):
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
