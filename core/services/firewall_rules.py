"""virtnet's nftables ruleset, rendered from the model (pure: no kernel, unit-tested).

Layout: two tables of virtnet's own, never anyone else's.

``table inet virtnet`` (routed traffic of networks with their own bridge, and what guests may
reach on the host)::

    forward     (hook forward)      oifname @links jump to_net ; iifname @links jump from_net
    postrouting (hook nat srcnat)   own NAT chains (vmap @nat4/@nat6) ; multicast and
                                    broadcast alone ; NAT subnets among themselves
                                    alone ; @masq4 masquerade
    input       (hook input)        guarded DHCP clients ; iifname @links jump host_in ;
                                    ip daddr @isolated4 jump own_in
    prerouting  (hook raw)          guests' unicast DHCP to the host becomes broadcast

The chains are fixed and every network is *elements* of shared sets keyed by its links:
``oifname @in4_ct`` (NAT: replies in), ``iifname @out4`` (forwarded out), ``iifname .
oifname @same``; ``ip saddr @masq4`` (masqueraded). A start or stop adds or removes a
handful of elements in one raw netlink transaction and no rule or jump: a transaction that
adds a jump makes nf_tables validate every chain of the table (1.9 ms at 10 networks, 6.5 ms
at 1,000, and growing), elements are not validated; and the sets are hash tables, constant
time per element, except the few that hold ranges (an interval set's elements cost time
in proportion to the set: pipapo, a concatenation with ranges, takes ~10 ms to delete one
of 1,000). Where the per-network chains matched subnets, the kernel's routing answers
instead: a packet routed to a network's link is for the network; one forwarded out of it
must have a source the kernel routes back to that link (``fib saddr . iif oif exists``,
a reverse path check); the host's own addresses on a guest's link are what ``fib daddr .
iif type local`` finds. A packet costs a few set lookups however many networks exist. Only
a network with NAT addresses or ports of its own gets a chain (``n<uuid>_nat4``) through the
``nat4`` map. Every element carries ``comment "n<uuid>"``: what the collector and virtnetd's
nftables events know a network's elements by.

Forwarding mirrors libvirt: traffic between a bridge and itself is accepted (except a routed
hairpin from an *isolated* port, whose MAC is in ``isolated_mac``: sent to the bridge's MAC,
since with ``br_netfilter`` loaded frames bridged between ports pass the forward hook too,
as from the bridge to itself); from the bridge only the network's own source addresses are
forwarded; towards the bridge NAT allows replies only and route allows what is routed to it;
anything else is rejected; NAT leaves multicast, broadcast and traffic within the network
alone.

What guests reach on the host (``host_in``, every mode with firewall rules): the host's
own addresses on that network (any service there), DHCP, DHCPv6 and ICMPv6 (neighbour and
router discovery); nothing on the host's other addresses (its uplink, other networks). The
host's own address on an *isolated* network also answers only that network's bridge (the
seed's "host on VLAN 2" is not reachable from VLAN 1), through ``own_in``.

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
    def own_nat(self) -> bool:
        """NAT addresses or ports of its own: a NAT chain of its own (the shared rules
        masquerade to libvirt's default ports)."""
        return self.nat_addresses is not None or self.nat_ports != DEFAULT_NAT_PORTS

    @property
    def chains(self) -> list[str]:
        """The network's own chains: only for NAT addresses or ports of its own."""
        if self.mode is not ForwardMode.NAT or not self.own_nat:
            return []
        names = [f"n{self.key}_nat4"] if self.subnets4 else []
        return names + ([f"n{self.key}_nat6"] if self.subnets6 and self.nat_ipv6 else [])


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


_V = (("4", "ipv4"), ("6", "ipv6"))

#: The shared sets a network's elements go in, with their nft types (the kernel's encoding
#: of their elements is :data:`virtnet.services.nft_raw.SETS`; a unit test holds the two
#: together). Keyed by links, exactly: hash tables, whose elements come and go in constant
#: time. Only a subnet (``masq``) or a prefix of names (``same_p``, a routed network's
#: links) needs a range: an interval set, whose elements cost time in proportion to the
#: set (pipapo, several fields: ~10 us per element to delete one, 10 ms at 1,000).
SET_TYPES: dict[str, str] = {
    "links": "ifname",  # the bridges (and a routed network's guest links, one by one)
    "same": "ifname . ifname",  # a link and itself: forwarded within one network
    "same_p": "ifname . ifname",  # the same for a network of links by prefix ("vp*")
    "bridge_mac": "ifname . ether_addr",  # a bridge's own MAC: a routed hairpin's target
    # what a link's mode forwards out of it (``out``) and into it (``in``; ``_ct``: replies
    # only, NAT), per IP version; ``_dev``: with <forward dev>, to or from that device only
    **{f"{kind}{v}{ct}{dev}": "ifname" + (" . ifname" if dev else "") for v, _ in _V
       for kind, ct in (("out", ""), ("in", ""), ("in", "_ct")) for dev in ("", "_dev")},
    **{f"isolated{v}": f"{t}_addr" for v, t in _V},  # the host's addresses on isolated nets
    **{f"masq{v}": f"{t}_addr" for v, t in _V},  # subnets masqueraded out of any link
    **{f"masq{v}_dev": f"{t}_addr . ifname" for v, t in _V},  # ... out of <forward dev> only
}  # fmt: skip
_RANGES = {"same_p", "masq4", "masq6", "masq4_dev", "masq6_dev"}
#: The chains of the inet table: base chains, then those they jump to (fixed: no network
#: adds a chain, except the rare one with its own NAT addresses or ports).
CHAINS = (
    "forward", "to_net", "from_net", "postrouting", "input", "host_in", "own_in", "prerouting",
)  # fmt: skip


def inet_base() -> list[str]:
    """The shared table, sets and chains; idempotent (flush and refill, atomically)."""
    out = [f"add table {INET}"]
    for name, kind in SET_TYPES.items():
        flags = " flags interval ;" if name in _RANGES else ""
        out.append(f"add set {INET} {name} {{ type {kind} ;{flags} }}")
    out += [
        # networks with NAT addresses or ports of their own: a chain each, through these
        f"add map {INET} nat4 {{ type ipv4_addr : verdict ; flags interval ; }}",
        f"add map {INET} nat6 {{ type ipv6_addr : verdict ; flags interval ; }}",
        f"add set {INET} guest_mac {{ type ether_addr ; }}",
        f"add set {INET} guest_hw {{ typeof ether saddr . @th,288,48 ; }}",
        f"add set {INET} isolated_mac {{ type ether_addr ; }}",
        f"add chain {INET} forward "
        "{ type filter hook forward priority filter ; policy accept ; }",
        f"add chain {INET} postrouting "
        "{ type nat hook postrouting priority srcnat ; policy accept ; }",
        f"add chain {INET} input {{ type filter hook input priority filter ; policy accept ; }}",
        f"add chain {INET} prerouting "
        "{ type filter hook prerouting priority raw ; policy accept ; }",
        *(f"add chain {INET} {name}" for name in ("to_net", "from_net", "host_in", "own_in")),
        *(f"flush chain {INET} {name}" for name in CHAINS),  # one transaction: idempotent
    ]
    rule = f"add rule {INET}"
    out += [
        # DHCP from guests to the host's own address (a renewal, a release) is delivered as
        # a broadcast: every dnsmasq bound to port 67 sees it and the one serving the link
        # answers. Unicast goes to one socket only, and dnsmasq's (SO_REUSEPORT) are picked
        # last-bound-first, ignoring their devices: with a dnsmasq serving several bridges
        # (dnsmasq_group, no device to bind to) a renewal went to whichever started last
        f"{rule} prerouting udp dport 67 iifname @links fib daddr type local "
        "ip daddr set 255.255.255.255",
        f"{rule} forward oifname @links jump to_net",
        f"{rule} forward iifname @links jump from_net",
        # towards a network: from itself (but no routed hairpin for isolated ports: to the
        # bridge's MAC; with br_netfilter on, frames bridged between ports pass this hook
        # too, and must not be caught here), then what its mode lets in, nothing else. The
        # kernel routed the packet to this link: its destination is the network's.
        f"{rule} to_net iifname . oifname @same oifname . ether daddr @bridge_mac "
        "ether saddr @isolated_mac reject",
        f"{rule} to_net iifname . oifname @same accept",
        f"{rule} to_net iifname . oifname @same_p accept",
    ]
    established = "ct state established,related"
    for v, family in _V:
        out += [
            f"{rule} to_net meta nfproto {family} oifname @in{v} accept",
            f"{rule} to_net meta nfproto {family} oifname . iifname @in{v}_dev accept",
            f"{rule} to_net meta nfproto {family} {established} oifname @in{v}_ct accept",
            f"{rule} to_net meta nfproto {family} {established} "
            f"oifname . iifname @in{v}_ct_dev accept",
        ]
    out += [
        f"{rule} to_net reject",
        f"{rule} from_net iifname . oifname @same accept",
        f"{rule} from_net iifname . oifname @same_p accept",
    ]
    # out of a network: from its own addresses only, those the kernel routes back to the
    # link the packet came in on (a reverse path check: a guest spoofing another network's
    # address, or any other, is rejected), without an element per subnet
    back = "fib saddr . iif oif exists"
    for v, family in _V:
        out += [
            f"{rule} from_net meta nfproto {family} iifname @out{v} {back} accept",
            f"{rule} from_net meta nfproto {family} iifname . oifname @out{v}_dev {back} accept",
        ]
    out.append(f"{rule} from_net reject")
    out += [  # NAT: libvirt leaves local multicast and broadcast alone
        f"{rule} postrouting ip saddr vmap @nat4",
        f"{rule} postrouting ip6 saddr vmap @nat6",
        f"{rule} postrouting ip daddr 224.0.0.0/24 return",
        f"{rule} postrouting ip daddr 255.255.255.255 return",
        f"{rule} postrouting ip6 daddr ff00::/8 return",
    ]
    low, high = DEFAULT_NAT_PORTS
    for v, _family in _V:
        ip = "ip" if v == "4" else "ip6"
        # between NAT networks' addresses: not NATed. Within a network that is guest to
        # guest (bridged too: with br_netfilter a bridged frame passes this hook, with no
        # input link) and the host's own address to a guest (dnsmasq's DHCP replies from
        # port 67: a masquerade would move them above 1023). Across two NAT networks the
        # forward chain lets no new connection through, and the host's own address on
        # one reaches the other unchanged, routed back to it.
        out.append(f"{rule} postrouting {ip} saddr @masq{v} {ip} daddr @masq{v} return")
        for match in (f"{ip} saddr @masq{v}", f"{ip} saddr . oifname @masq{v}_dev"):
            out += [
                *(f"{rule} postrouting {match} meta l4proto {proto} masquerade to :{low}-{high}"
                  for proto in ("tcp", "udp")),
                f"{rule} postrouting {match} masquerade",
            ]  # fmt: skip
    out += [
        # no relayed requests (giaddr set): guests are no DHCP relays, and a shared dnsmasq
        # (dnsmasq_group) would serve one from another network's range
        f"{rule} input iifname @links udp dport 67 @th,256,32 != 0 drop",
        # BOOTREQUEST over Ethernet whose chaddr is the sender's own MAC (see above)
        f"{rule} input udp dport 67 ether saddr @guest_mac @th,64,24 != 0x010106 drop",
        f"{rule} input udp dport 67 ether saddr @guest_mac "
        "ether saddr . @th,288,48 != @guest_hw drop",
        # DHCPv6 finds a lease by DUID, which any guest can forge: no Release or Decline
        # from guarded guests (their leases expire instead)
        f"{rule} input udp dport 547 ether saddr @guest_mac @th,64,8 {{ 8, 9 }} drop",
        f"{rule} input iifname @links jump host_in",
        f"{rule} input ip daddr @isolated4 jump own_in",
        f"{rule} input ip6 daddr @isolated6 jump own_in",
        # what a guest reaches on the host: the host's addresses on its own link (any
        # service there), DHCP, DHCPv6, neighbour and router discovery; nothing else (the
        # uplink, other networks)
        f"{rule} host_in fib daddr . iif type local accept",
        f"{rule} host_in ip daddr 255.255.255.255 udp dport 67 accept",
        f"{rule} host_in ip6 daddr ff02::1:2 udp dport 547 accept",
        f"{rule} host_in ip6 daddr fe80::/10 meta l4proto ipv6-icmp accept",
        f"{rule} host_in ip6 daddr ff02::/16 meta l4proto ipv6-icmp accept",
        f"{rule} host_in reject",
        # the host's address on an isolated network: from that network (and itself) only
        f"{rule} own_in fib daddr . iif type local accept",
        f'{rule} own_in iifname "lo" accept',
        f"{rule} own_in reject",
    ]
    return out


def network_elements(r: NetworkRules) -> list[tuple[str, tuple[str, ...]]]:
    """The network as (set, fields) elements of the shared sets: its whole firewall, unless
    it has NAT addresses or ports of its own (:attr:`NetworkRules.chains`). A network of
    links by prefix is one range here; each link adds its own when it joins
    (:func:`join_link`)."""
    br = r.links
    out: list[tuple[str, tuple[str, ...]]]
    if r.prefix:
        out = [("same_p", (br, br))]
    else:
        out = [*link_elements(r, br), ("same", (br, br))]
        if r.mac:
            out.append(("bridge_mac", (br, r.mac)))
    dev = quote(r.forward_dev, "network/forward/@dev") if r.forward_dev else None
    for v, subnets in (("4", r.subnets4), ("6", r.subnets6)):
        natted = r.mode is ForwardMode.NAT and (v == "4" or r.nat_ipv6)
        if natted and not r.own_nat:
            out += [(f"masq{v}_dev", (s, dev)) if dev else (f"masq{v}", (s,)) for s in subnets]
    for address in r.addresses if r.guards_host else ():
        out.append((f"isolated{ipaddress.ip_address(address).version}", (address,)))
    return out


def link_elements(r: NetworkRules, link: str) -> list[tuple[str, tuple[str, ...]]]:
    """What one link of the network (``link`` quoted) is in: the dispatch, and what its
    mode forwards in and out of it, per IP version it has subnets of."""
    out: list[tuple[str, tuple[str, ...]]] = [("links", (link,))]
    if r.mode is ForwardMode.ISOLATED:
        return out
    dev = quote(r.forward_dev, "network/forward/@dev") if r.forward_dev else None
    suffix, via = ("_dev", (dev,)) if dev else ("", ())
    for v, subnets in (("4", r.subnets4), ("6", r.subnets6)):
        if subnets:
            natted = r.mode is ForwardMode.NAT and (v == "4" or r.nat_ipv6)
            out.append((f"out{v}{suffix}", (link, *via)))
            out.append((f"in{v}{'_ct' if natted else ''}{suffix}", (link, *via)))
    return out


def _element(name: str, fields: tuple[str, ...]) -> str:
    return f"{name} {{ {' . '.join(fields)} }}"


def _labelled(key: str, elements: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """``add element`` statements, each with network ``key``'s comment."""
    label = f'comment "n{key}"'
    return [f"add element {INET} {n} {{ {' . '.join(f)} {label} }}" for n, f in elements]


def add_network(r: NetworkRules) -> list[str]:
    """Statements adding one network: elements of the shared sets, each with the network's
    key as its comment (what the collector and the daemon's nftables events go by)."""
    out = _labelled(r.key, network_elements(r))
    if r.mode is ForwardMode.NAT and r.own_nat:
        dev = r.forward_dev
        dev_out = f"oifname {quote(dev, 'network/forward/@dev')} " if dev else ""
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


def join_link(key: str, ifname: str, r: NetworkRules | None = None) -> list[str]:
    """A guest link of a routed network without a bridge joins the shared chains with what
    its network's mode allows (its network's elements name its links by prefix). Without
    ``r`` (a backend that does not pass its network's rules) it only joins the dispatch:
    its guests reach each other and the host, not beyond."""
    only: list[tuple[str, tuple[str, ...]]] = [("links", (quote(ifname),))]
    return _labelled(key, link_elements(r, quote(ifname)) if r else only)


def leave_link(ifname: str, r: NetworkRules | None = None) -> list[str]:
    """Removes what :func:`join_link` added (``r`` None: only the dispatch entry, all a
    journal of an older version knows)."""
    if r is None:
        return [f"delete element {INET} links {{ {quote(ifname)} }}"]
    return [f"delete element {INET} {_element(n, f)}" for n, f in link_elements(r, quote(ifname))]


def remove_network(r: NetworkRules) -> list[str]:
    """Statements removing exactly what :func:`add_network` added (elements before chains)."""
    out = [f"delete element {INET} {_element(n, f)}" for n, f in network_elements(r)]
    if r.mode is ForwardMode.NAT and r.own_nat:
        out += [f"delete element {INET} nat4 {{ {s} }}" for s in r.subnets4]
        if r.nat_ipv6:
            out += [f"delete element {INET} nat6 {{ {s} }}" for s in r.subnets6]
    for chain in r.chains:
        out += [f"flush chain {INET} {chain}", f"delete chain {INET} {chain}"]
    return out
