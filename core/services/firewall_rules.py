"""virtnet's nftables ruleset, rendered from the model (pure: no kernel, unit-tested).

Layout: two tables of virtnet's own, never anyone else's.

``table inet virtnet`` (routed traffic of networks with their own bridge, and what guests may
reach on the host)::

    forward     (hook forward)      oifname vmap @fwd_out ; iifname vmap @fwd_in
    postrouting (hook nat srcnat)   ip saddr vmap @nat4 ; ip6 saddr vmap @nat6
    input       (hook input)        guarded DHCP clients ; iifname vmap @guest_in ;
                                    ip daddr vmap @local4 ; ip6 daddr vmap @local6

Each network adds its own chains (``n<uuid>_from``, ``_to``, ``_host``, ``_nat4``, ``_nat6``)
and one element per map pointing at them. A packet costs a few hash lookups however many
networks exist, and adding or removing a network changes only its own chains and elements.

Forwarding mirrors libvirt: traffic between a bridge and itself is accepted (except a routed
hairpin from an *isolated* port, whose MAC is in ``isolated_mac``: sent to the bridge's MAC,
since with ``br_netfilter`` loaded frames bridged between ports pass the forward hook too,
as from the bridge to itself); from the bridge only the
network's own source addresses are forwarded; towards the bridge NAT allows replies only and
route allows the subnet; anything else is rejected; NAT leaves multicast and broadcast alone.

What guests reach on the host (``n<uuid>_host``, every mode with firewall rules): the host's
own addresses on that network (any service there), DHCP, DHCPv6 and ICMPv6 (neighbour and
router discovery); nothing on the host's other addresses (its uplink, other networks). The
host's own address on an *isolated* network also answers only that network's bridge (the
seed's "host on VLAN 2" is not reachable from VLAN 1), through the ``local`` maps.

DHCP requests from guarded ports (MAC in ``guest_mac``) reach dnsmasq only when their client
hardware address (``chaddr``) is the port's own MAC (``guest_hw`` holds ``MAC . MAC``):
dnsmasq identifies a client by it (``dhcp-ignore-clid``), so no guest can take leases in
another's name, starve the pool with made-up addresses, or release another guest's lease.
OpenFlow cannot see ``chaddr``, so the check sits here, on the host, for every backend.
DHCPv6 Release and Decline from guarded guests are dropped here too: dnsmasq finds a DHCPv6
lease by the client's DUID, which any guest can forge, so a release cannot be tied to the
port it came from (leases expire instead); and an address leased to one MAC is never opened
for another (the lease script), so a forged Request gains nothing either.

Per-port anti-spoofing on a Linux bridge is in :mod:`virtnet.services.guard_rules`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from virtnet.model.network import ForwardMode, Network
from virtnet.services.nft import quote, quote_prefix

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
    mac: str | None = None  # the bridge's MAC: what a routed packet from a guest is sent to
    #: ``bridge`` is a name prefix: the network is every link whose name starts with it (a
    #: routed backend without a bridge gives each guest a link of its own). Its links join
    #: the dispatch maps one by one (:func:`join_link`) as they are made.
    prefix: bool = False

    @property
    def links(self) -> str:
        """The network's links in a rule: the bridge, or every link with the prefix."""
        subject = "network/bridge/@name"
        return quote_prefix(self.bridge, subject) if self.prefix else quote(self.bridge, subject)

    @property
    def guards_host(self) -> bool:
        """Isolated networks keep the host's addresses on them to their own guests."""
        return self.mode is ForwardMode.ISOLATED and bool(self.addresses)

    @property
    def chains(self) -> list[str]:
        names = [f"n{self.key}_from", f"n{self.key}_to", f"n{self.key}_host"]
        if self.guards_host:
            names.append(f"n{self.key}_in")
        if self.mode is ForwardMode.NAT:
            names += [f"n{self.key}_nat4"] if self.subnets4 else []
            names += [f"n{self.key}_nat6"] if self.subnets6 and self.nat_ipv6 else []
        return names


def has_firewall(net: Network) -> bool:
    """virtnet adds rules for nat, route and isolated networks; none for open (libvirt's
    definition of it), bridge and direct ones (the host does not route for them)."""
    return net.mode in (ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.ISOLATED)


def network_rules(net: Network, bridge: str, *, prefix: bool = False) -> NetworkRules | None:
    """The firewall's view of ``net``; None when virtnet adds no rules (open, bridge, direct).

    ``prefix``: ``bridge`` names no bridge but the prefix of the network's links (see
    :attr:`NetworkRules.prefix`)."""
    mode = net.mode
    if not has_firewall(net):
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
        mac=None if prefix else net.mac,
        prefix=prefix,
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
        f"add map {INET} guest_in {{ type ifname : verdict ; }}",
        f"add set {INET} guest_mac {{ type ether_addr ; }}",
        f"add set {INET} guest_hw {{ typeof ether saddr . @th,288,48 ; }}",
        f"add set {INET} isolated_mac {{ type ether_addr ; }}",
        f"add chain {INET} input {{ type filter hook input priority filter ; policy accept ; }}",
        f"flush chain {INET} input",
        # BOOTREQUEST over Ethernet whose chaddr is the sender's own MAC (see above)
        f"add rule {INET} input udp dport 67 ether saddr @guest_mac @th,64,24 != 0x010106 drop",
        f"add rule {INET} input udp dport 67 ether saddr @guest_mac "
        "ether saddr . @th,288,48 != @guest_hw drop",
        # DHCPv6 finds a lease by DUID, which any guest can forge: no Release or Decline
        # from guarded guests (their leases expire instead)
        f"add rule {INET} input udp dport 547 ether saddr @guest_mac @th,64,8 {{ 8, 9 }} drop",
        f"add rule {INET} input iifname vmap @guest_in",
        f"add rule {INET} input ip daddr vmap @local4",
        f"add rule {INET} input ip6 daddr vmap @local6",
    ]


def add_network(r: NetworkRules) -> list[str]:
    """Statements adding one network's chains and map elements."""
    br = r.links
    dev_out = f"oifname {quote(r.forward_dev, 'network/forward/@dev')} " if r.forward_dev else ""
    dev_in = f"iifname {quote(r.forward_dev, 'network/forward/@dev')} " if r.forward_dev else ""
    frm, to, host = f"n{r.key}_from", f"n{r.key}_to", f"n{r.key}_host"
    out = [f"add chain {INET} {frm}", f"add chain {INET} {to}"]
    out.append(f"add rule {INET} {frm} oifname {br} accept")
    if r.mac:  # no routed hairpin for isolated ports (to the bridge's MAC: with br_netfilter
        # on, frames bridged between ports pass this hook too, and must not be caught here)
        out.append(
            f"add rule {INET} {to} iifname {br} ether daddr {r.mac} "
            "ether saddr @isolated_mac reject"
        )
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
    out += [f"add chain {INET} {host}", *_host_rules(r, host)]
    if not r.prefix:
        out += join_link(r.key, r.bridge)
    if r.guards_host:  # the host's address on an isolated network: from its bridge only
        own = f"n{r.key}_in"
        out += [
            f"add chain {INET} {own}",
            f"add rule {INET} {own} iifname {br} accept",
            f'add rule {INET} {own} iifname "lo" accept',
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


def _host_rules(r: NetworkRules, chain: str) -> list[str]:
    """What a guest may reach on the host: its network's services, nothing else."""
    c = f"add rule {INET} {chain}"
    own4 = [a for a in r.addresses if ipaddress.ip_address(a).version == 4]
    own6 = [a for a in r.addresses if ipaddress.ip_address(a).version == 6]
    # a rule per address, no anonymous sets: every statement of a network stays in the
    # shapes virtnet.services.nft_raw sends without libnftables
    return [
        *(f"{c} ip daddr {a} accept" for a in own4),
        *(f"{c} ip6 daddr {a} accept" for a in own6),
        f"{c} ip daddr 255.255.255.255 udp dport 67 accept",  # DHCP discovery
        f"{c} ip6 daddr ff02::1:2 udp dport 547 accept",  # DHCPv6
        *(f"{c} ip6 daddr {p} meta l4proto ipv6-icmp accept" for p in ("fe80::/10", "ff02::/16")),
        f"{c} reject",
    ]


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
        to = f"{target}:{low}-{high}"
        out += [
            f"add rule {INET} {chain} {dev_out}meta l4proto {proto} snat ip to {to}"
            for proto in ("tcp", "udp")
        ]
        out.append(f"add rule {INET} {chain} {dev_out}snat ip to {target}")
    else:
        out += [
            f"add rule {INET} {chain} {dev_out}meta l4proto {proto} masquerade to :{low}-{high}"
            for proto in ("tcp", "udp")
        ]
        out.append(f"add rule {INET} {chain} {dev_out}masquerade")
    for subnet in subnets:
        out.append(f"add element {INET} nat{v} {{ {subnet} : jump {chain} }}")
    return out


def join_link(key: str, ifname: str) -> list[str]:
    """A link joins network ``key``'s dispatch: traffic in and out of it, and to the host,
    goes through the network's chains (its bridge; or each guest link of a routed one)."""
    link = quote(ifname)
    return [
        f"add element {INET} fwd_in {{ {link} : jump n{key}_from }}",
        f"add element {INET} fwd_out {{ {link} : jump n{key}_to }}",
        f"add element {INET} guest_in {{ {link} : jump n{key}_host }}",
    ]


def leave_link(ifname: str) -> list[str]:
    link = quote(ifname)
    return [f"delete element {INET} {m} {{ {link} }}" for m in ("fwd_in", "fwd_out", "guest_in")]


def remove_network(r: NetworkRules) -> list[str]:
    """Statements removing exactly what :func:`add_network` added (elements before chains)."""
    out = [] if r.prefix else leave_link(r.bridge)
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
