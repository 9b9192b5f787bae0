"""virtnet's nftables ruleset, rendered from the model (pure: no kernel, unit-tested).

Layout: two tables of virtnet's own, never anyone else's.

``table inet virtnet`` (routed traffic of networks with their own bridge)::

    forward     (hook forward)      oifname vmap @fwd_out ; iifname vmap @fwd_in
    postrouting (hook nat srcnat)   ip saddr vmap @nat4 ; ip6 saddr vmap @nat6
    input       (hook input)        ip daddr vmap @local4 ; ip6 daddr vmap @local6

Each network adds its own chains (``n<uuid>_from``, ``_to``, ``_nat4``, ``_nat6``) and one
element per map pointing at them. A packet costs two hash lookups however many networks exist,
and adding or removing a network changes only its own chains and elements. The rules mirror
libvirt's: traffic between a bridge and itself is accepted; from the bridge only the
network's own source addresses are forwarded; towards the bridge NAT allows replies only and
route allows the subnet; anything else is rejected; NAT leaves multicast and broadcast alone.
The host's own address on an *isolated* network answers only that network's bridge (the
seed's "host on VLAN 2" is not reachable from VLAN 1), through the ``local`` maps.
libvirt's input/output accepts for DHCP and DNS are not copied: an accept in one nftables
table cannot override a drop in another, so they would change nothing.

``table bridge virtnet`` (per-port anti-spoofing): one fixed chain and four sets. A frame
from a port in ``guarded`` is dropped unless ``iifname . source MAC`` (Ethernet and ARP) is in
``port_mac``, and ``MAC . source IP`` (IPv4, ARP, IPv6) is in ``allowed4``/``allowed6``
(filled from reservations at plug time and by dnsmasq's lease script after DHCP). DHCP
discovery from 0.0.0.0, ARP probes, and IPv6 link-local and unspecified sources pass;
VLAN-tagged frames do not. Plugging a port adds set elements only, sent as raw netlink
(:mod:`virtnet.services.nft_elements`): its cost does not depend on the ruleset's size.

libnftables loads a table's chains and sets into its cache before each command, so per-object
chains or named sets would make every later operation slower; set elements do not.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from virtnet.model.network import ForwardMode, Network
from virtnet.services.nft import quote
from virtnet.services.nft_elements import ElementChange, concat, ifname_key, ip_key, mac_key

TABLE = "virtnet"
INET = f"inet {TABLE}"
BRIDGE = f"bridge {TABLE}"
DEFAULT_NAT_PORTS = (1024, 65535)


@dataclass(frozen=True)
class NetworkRules:
    """What the firewall needs to know about one network."""

    key: str  # the network's uuid without dashes: chain names
    bridge: str
    mode: ForwardMode  # NAT, ROUTE or ISOLATED
    subnets4: tuple[str, ...] = ()
    subnets6: tuple[str, ...] = ()
    forward_dev: str | None = None
    nat_addresses: tuple[str, str] | None = None
    nat_ports: tuple[int, int] = DEFAULT_NAT_PORTS
    nat_ipv6: bool = False
    addresses: tuple[str, ...] = ()  # the host's own addresses on the network

    @property
    def guards_host(self) -> bool:
        """Isolated networks keep the host's addresses on them to their own guests."""
        return self.mode is ForwardMode.ISOLATED and bool(self.addresses)

    @property
    def chains(self) -> list[str]:
        names = [f"n{self.key}_from", f"n{self.key}_to"]
        if self.guards_host:
            names.append(f"n{self.key}_in")
        if self.mode is ForwardMode.NAT:
            names += [f"n{self.key}_nat4"] if self.subnets4 else []
            names += [f"n{self.key}_nat6"] if self.subnets6 and self.nat_ipv6 else []
        return names


def network_rules(net: Network, bridge: str) -> NetworkRules | None:
    """The firewall's view of ``net``; None when virtnet adds no rules (open, bridge, direct)."""
    mode = net.mode
    if mode not in (ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.ISOLATED):
        return None
    assert net.uuid is not None
    subnets = [ipaddress.ip_network(f"{ip.address}/{ip.prefixlen}", strict=False) for ip in net.ips]
    nat = net.forward.nat if net.forward else None
    addresses = None
    ports = DEFAULT_NAT_PORTS
    if nat is not None:
        if nat.address_start:
            addresses = (nat.address_start, nat.address_end or nat.address_start)
        if nat.port_start:
            ports = (nat.port_start, nat.port_end or nat.port_start)
    return NetworkRules(
        key=net.uuid.replace("-", ""),
        bridge=bridge,
        mode=mode,
        subnets4=tuple(str(s) for s in subnets if s.version == 4),
        subnets6=tuple(str(s) for s in subnets if s.version == 6),
        forward_dev=net.forward.dev if net.forward else None,
        nat_addresses=addresses,
        nat_ports=ports,
        nat_ipv6=bool(nat and nat.ipv6),
        addresses=tuple(ip.address for ip in net.ips),
    )


def inet_base() -> list[str]:
    """The shared table, maps and dispatch chains; idempotent (flush and refill, atomically)."""
    return [
        f"add table {INET}",
        f"add map {INET} fwd_in {{ type ifname : verdict ; }}",
        f"add map {INET} fwd_out {{ type ifname : verdict ; }}",
        f"add map {INET} nat4 {{ type ipv4_addr : verdict ; flags interval ; }}",
        f"add map {INET} nat6 {{ type ipv6_addr : verdict ; flags interval ; }}",
        f"add chain {INET} forward "
        "{ type filter hook forward priority filter ; policy accept ; }",
        f"flush chain {INET} forward",  # makes the whole base idempotent, in one transaction
        f"add rule {INET} forward oifname vmap @fwd_out",
        f"add rule {INET} forward iifname vmap @fwd_in",
        f"add chain {INET} postrouting "
        "{ type nat hook postrouting priority srcnat ; policy accept ; }",
        f"flush chain {INET} postrouting",
        f"add rule {INET} postrouting ip saddr vmap @nat4",
        f"add rule {INET} postrouting ip6 saddr vmap @nat6",
        f"add map {INET} local4 {{ type ipv4_addr : verdict ; }}",
        f"add map {INET} local6 {{ type ipv6_addr : verdict ; }}",
        f"add chain {INET} input {{ type filter hook input priority filter ; policy accept ; }}",
        f"flush chain {INET} input",
        f"add rule {INET} input ip daddr vmap @local4",
        f"add rule {INET} input ip6 daddr vmap @local6",
    ]


def add_network(r: NetworkRules) -> list[str]:
    """Statements adding one network's chains and map elements."""
    br = quote(r.bridge, "network/bridge/@name")
    dev_out = f"oifname {quote(r.forward_dev, 'network/forward/@dev')} " if r.forward_dev else ""
    dev_in = f"iifname {quote(r.forward_dev, 'network/forward/@dev')} " if r.forward_dev else ""
    frm, to = f"n{r.key}_from", f"n{r.key}_to"
    out = [f"add chain {INET} {frm}", f"add chain {INET} {to}"]
    out.append(f"add rule {INET} {frm} oifname {br} accept")
    out.append(f"add rule {INET} {to} iifname {br} accept")
    if r.mode is not ForwardMode.ISOLATED:
        for family, subnets in (("ip", r.subnets4), ("ip6", r.subnets6)):
            for subnet in subnets:
                out.append(f"add rule {INET} {frm} {dev_out}{family} saddr {subnet} accept")
                natted = r.mode is ForwardMode.NAT and (family == "ip" or r.nat_ipv6)
                state = "ct state established,related " if natted else ""
                out.append(f"add rule {INET} {to} {dev_in}{family} daddr {subnet} {state}accept")
    out.append(f"add rule {INET} {frm} reject")
    out.append(f"add rule {INET} {to} reject")
    out.append(f"add element {INET} fwd_in {{ {br} : jump {frm} }}")
    out.append(f"add element {INET} fwd_out {{ {br} : jump {to} }}")
    if r.guards_host:  # the host's address on an isolated network: from its bridge only
        own = f"n{r.key}_in"
        out += [
            f"add chain {INET} {own}",
            f'add rule {INET} {own} iifname {{ {br}, "lo" }} accept',
            f"add rule {INET} {own} reject",
        ]
        for address in r.addresses:
            v = ipaddress.ip_address(address).version
            out.append(f"add element {INET} local{v} {{ {address} : jump {own} }}")
    if r.mode is ForwardMode.NAT:
        if r.subnets4:
            out += _nat_chain(r, "ip", "4", r.subnets4, dev_out)
        if r.subnets6 and r.nat_ipv6:
            out += _nat_chain(r, "ip6", "6", r.subnets6, dev_out)
    return out


def _nat_chain(
    r: NetworkRules, family: str, v: str, subnets: tuple[str, ...], dev_out: str
) -> list[str]:
    chain = f"n{r.key}_nat{v}"
    out = [f"add chain {INET} {chain}"]
    if v == "4":  # libvirt leaves local multicast and broadcast alone
        out.append(f"add rule {INET} {chain} ip daddr 224.0.0.0/24 return")
        out.append(f"add rule {INET} {chain} ip daddr 255.255.255.255 return")
    else:
        out.append(f"add rule {INET} {chain} ip6 daddr ff00::/8 return")
    for subnet in subnets:
        out.append(f"add rule {INET} {chain} {family} daddr {subnet} return")
    low, high = r.nat_ports
    if r.nat_addresses and v == "4":
        start, end = r.nat_addresses
        target = start if start == end else f"{start}-{end}"
        out.append(
            f"add rule {INET} {chain} {dev_out}meta l4proto {{ tcp, udp }} "
            f"snat ip to {target}:{low}-{high}"
        )
        out.append(f"add rule {INET} {chain} {dev_out}snat ip to {target}")
    else:
        out.append(
            f"add rule {INET} {chain} {dev_out}meta l4proto {{ tcp, udp }} "
            f"masquerade to :{low}-{high}"
        )
        out.append(f"add rule {INET} {chain} {dev_out}masquerade")
    for subnet in subnets:
        out.append(f"add element {INET} nat{v} {{ {subnet} : jump {chain} }}")
    return out


def remove_network(r: NetworkRules) -> list[str]:
    """Statements removing exactly what :func:`add_network` added (elements before chains)."""
    br = quote(r.bridge)
    out = [f"delete element {INET} fwd_in {{ {br} }}", f"delete element {INET} fwd_out {{ {br} }}"]
    if r.guards_host:
        out += [
            f"delete element {INET} local{ipaddress.ip_address(a).version} {{ {a} }}"
            for a in r.addresses
        ]
    if r.mode is ForwardMode.NAT:
        out += [f"delete element {INET} nat4 {{ {s} }}" for s in r.subnets4]
        if r.nat_ipv6:
            out += [f"delete element {INET} nat6 {{ {s} }}" for s in r.subnets6]
    for chain in r.chains:
        out += [f"flush chain {INET} {chain}", f"delete chain {INET} {chain}"]
    return out


# --- per-port anti-spoofing -----------------------------------------------------------------
@dataclass(frozen=True)
class PortGuard:
    """One guarded port: its link, its MAC, and the addresses known for it at plug time."""

    ifname: str
    mac: str
    ips: tuple[str, ...] = field(default=())


def bridge_base() -> list[str]:
    """The shared guard table: fixed rules, and per-port facts only as set elements, so a
    port costs the same however many exist (no per-port chains or sets to cache or walk)."""
    c = f"{BRIDGE} prerouting"
    return [
        f"add table {BRIDGE}",
        f"add set {BRIDGE} guarded {{ type ifname ; }}",
        f"add set {BRIDGE} port_mac {{ type ifname . ether_addr ; }}",
        f"add set {BRIDGE} allowed4 {{ type ether_addr . ipv4_addr ; }}",
        f"add set {BRIDGE} allowed6 {{ type ether_addr . ipv6_addr ; }}",
        f"add chain {c} {{ type filter hook prerouting priority filter ; policy accept ; }}",
        f"flush chain {c}",  # makes the whole base idempotent, in one transaction
        f"add rule {c} iifname != @guarded accept",
        f"add rule {c} iifname . ether saddr != @port_mac drop",
        f"add rule {c} iifname . arp saddr ether != @port_mac drop",
        # a guest cannot hide traffic from these checks behind a VLAN tag
        f"add rule {c} ether type {{ 8021q, 8021ad }} drop",
        f"add rule {c} arp saddr ip 0.0.0.0 accept",
        f"add rule {c} ether type arp ether saddr . arp saddr ip != @allowed4 drop",
        f"add rule {c} ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
        f"add rule {c} ether type ip ether saddr . ip saddr != @allowed4 drop",
        f"add rule {c} ip6 saddr {{ ::, fe80::/10 }} accept",
        f"add rule {c} ether type ip6 ether saddr . ip6 saddr != @allowed6 drop",
    ]


def port_guard_changes(
    g: PortGuard, add: bool, addresses: tuple[str, ...] = ()
) -> list[ElementChange]:
    """The set elements of a guarded port (sent as raw netlink: see ``nft_elements``).

    Added in this order (and removed in reverse) so the port is only ``guarded`` once its MAC
    and addresses are in place.
    """
    quote(g.ifname)  # the same names are accepted as in rules
    port, mac = ifname_key(g.ifname), mac_key(g.mac)
    by_family: dict[int, list[bytes]] = {4: [], 6: []}
    for address in addresses:
        by_family[ipaddress.ip_address(address).version].append(concat(mac, ip_key(address)))
    changes = [ElementChange(add, "bridge", TABLE, "port_mac", (concat(port, mac),))]
    changes += [
        ElementChange(add, "bridge", TABLE, f"allowed{v}", tuple(keys))
        for v, keys in by_family.items()
        if keys
    ]
    changes.append(ElementChange(add, "bridge", TABLE, "guarded", (port,)))
    return changes if add else changes[::-1]
