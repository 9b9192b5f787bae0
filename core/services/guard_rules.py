"""Per-port anti-spoofing on a Linux bridge: ``table bridge virtnet`` (pure: unit-tested).

One fixed chain on the bridge family's prerouting hook and a few sets; a port is guarded by
adding set elements only (sent as raw netlink: :mod:`virtnet.services.nft_elements`), so a plug
costs the same however many ports exist. A frame from a port in ``guarded`` must pass, in
order:

* **Link layer**: source MAC (Ethernet and ARP sender) is the port's (``port_mac``); no VLAN
  tags (a guest could hide traffic from these checks behind one).
* **DHCP**: no server replies from guests (UDP source port 67, DHCPv6 547). Client requests
  are checked on the host, where dnsmasq receives them (:mod:`firewall_rules`, ``guest_hw``).
* **IPv4 and ARP**: source address is one of the port's (``allowed4``: reservations, declared
  addresses; ``leased4``: dnsmasq's lease script). 0.0.0.0 only for DHCP discovery and ARP
  probes.
* **IPv6**: no router advertisements or redirects; the unspecified source only for duplicate
  address detection and MLD reports; other sources must be the port's (``allowed6``: its
  EUI-64 link-local and SLAAC addresses, declared addresses; ``leased6``: DHCPv6).
  Privacy (RFC 4941) and stable-privacy (RFC 7217) addresses cannot be known in advance:
  such guests declare their addresses (``--ip``) or opt out (``--no-spoof-check``).
* **Neighbour discovery**: ND messages directly after the IPv6 header (no extension headers
  to hide behind); a link-layer address option, when present, is the only option and is the
  port's MAC (``port_hw``); a Neighbour Advertisement's target is one of the port's addresses
  (``target6`` / ``leased_target6``). No guest can poison another's or the host's neighbour
  cache.

Static facts (``allowed*``, ``target6``) and leases (``leased*``) live in separate sets so a
lease's release or expiry never removes a reservation or a declared address. ``port_hw`` and
``target6`` hold the same bytes as ``port_mac`` and ``allowed6`` under raw-payload types,
because nftables matches option fields inside a packet only as raw payload.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from virtnet.services.nft import quote
from virtnet.services.nft_elements import ElementChange, concat, ifname_key, ip_key, mac_key

TABLE = "virtnet"
BRIDGE = f"bridge {TABLE}"

#: ND types whose options are checked (router solicitation, neighbour solicitation/advert).
_ND = "{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }"
_NS_NA = "{ nd-neighbor-solicit, nd-neighbor-advert }"


@dataclass(frozen=True)
class PortGuard:
    """One guarded port: its link, its MAC, and the addresses known for it at plug time
    (reservations, declared addresses, EUI-64 link-local and SLAAC)."""

    ifname: str
    mac: str
    ips: tuple[str, ...] = field(default=())


#: Why a guard dropped a frame: the set that remembers each port's drops of that kind (keyed by
#: the port's link, and the forbidden source where there is one), and what to tell the user.
DROP_REASONS = {
    "dropped_mac": "its source MAC {key} is not this port's MAC",
    "dropped4": "{key} is not this port's lease, reservation or declared address",
    "dropped6": "{key} is not this port's lease, reservation, declared or link-local address",
    "dropped_vlan": "VLAN-tagged frames are not allowed from a guest",
    "dropped_dhcp": "DHCP or DHCPv6 server messages: only the host serves DHCP",
    "dropped_ra": "router advertisements or redirects: only the host routes",
    "dropped_nd": "neighbour discovery with extension headers, extra options, or an "
    "option or target that is not this port's",
}
#: How long a port's drop record lasts after its last drop, and how many a set holds: a flood
#: of made-up sources fills it and ages out; dropping never depends on it (below).
DROP_MEMORY_S = 3600
_DROP_SETS = {  # set -> its key
    "dropped_mac": "ifname . ether_addr",
    "dropped4": "ifname . ipv4_addr",
    "dropped6": "ifname . ipv6_addr",
    "dropped_vlan": "ifname",
    "dropped_dhcp": "ifname",
    "dropped_ra": "ifname",
    "dropped_nd": "ifname",
}
_DROP_CHAINS = {  # chain -> (set, what of the frame is remembered)
    "drop_mac": ("dropped_mac", "iifname . ether saddr"),
    "drop_arp_mac": ("dropped_mac", "iifname . arp saddr ether"),
    "drop_vlan": ("dropped_vlan", "iifname"),
    "drop_dhcp": ("dropped_dhcp", "iifname"),
    "drop_arp4": ("dropped4", "iifname . arp saddr ip"),
    "drop_ip4": ("dropped4", "iifname . ip saddr"),
    "drop_ra": ("dropped_ra", "iifname"),
    "drop_ip6": ("dropped6", "iifname . ip6 saddr"),
    "drop_nd": ("dropped_nd", "iifname"),
}


def bridge_base() -> list[str]:
    """The shared guard table: fixed rules, and per-port facts only as set elements, so a
    port costs the same however many exist (no per-port chains or sets to cache or walk).

    A rule that drops jumps (goto) to a chain of its reason, which remembers the port and the
    forbidden source in a dynamic set with a counter (``virtnet net-port-info --drops``),
    then drops. The remembering is a rule of its own: when the set is full its ``update``
    fails and ends only that rule, and the next one still drops."""
    t = BRIDGE
    c = f"add rule {t} prerouting"
    out = [f"add table {t}"]
    out += [
        f"add set {t} {name} {{ type {key} ; flags dynamic, timeout ; "
        f"timeout {DROP_MEMORY_S}s ; size 65536 ; counter ; }}"
        for name, key in _DROP_SETS.items()
    ]
    for chain, (memory, key) in _DROP_CHAINS.items():
        out += [
            f"add chain {t} {chain}",
            f"flush chain {t} {chain}",
            f"add rule {t} {chain} update @{memory} {{ {key} }}",
            f"add rule {t} {chain} drop",
        ]
    return [
        *out,
        f"add set {t} guarded {{ type ifname ; }}",
        f"add set {t} port_mac {{ type ifname . ether_addr ; }}",
        f"add set {t} port_hw {{ typeof iifname . @th,208,48 ; }}",
        f"add set {t} allowed4 {{ type ether_addr . ipv4_addr ; }}",
        f"add set {t} leased4 {{ type ether_addr . ipv4_addr ; }}",
        f"add set {t} allowed6 {{ type ether_addr . ipv6_addr ; }}",
        f"add set {t} leased6 {{ type ether_addr . ipv6_addr ; }}",
        f"add set {t} target6 {{ typeof ether saddr . @th,64,128 ; }}",
        f"add set {t} leased_target6 {{ typeof ether saddr . @th,64,128 ; }}",
        f"add chain {t} prerouting {{ type filter hook prerouting priority filter ; "
        "policy accept ; }",
        f"flush chain {t} prerouting",  # makes the whole base idempotent, in one transaction
        f"{c} iifname != @guarded accept",
        f"{c} iifname . ether saddr != @port_mac goto drop_mac",
        f"{c} iifname . arp saddr ether != @port_mac goto drop_arp_mac",
        f"{c} ether type {{ 8021q, 8021ad }} goto drop_vlan",
        f"{c} udp sport {{ 67, 547 }} goto drop_dhcp",  # DHCP servers are the host's job
        # IPv4 and ARP
        f"{c} arp saddr ip 0.0.0.0 accept",
        f"{c} ether type arp ether saddr . arp saddr ip != @allowed4 "
        "ether saddr . arp saddr ip != @leased4 goto drop_arp4",
        f"{c} ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
        f"{c} ether type ip ether saddr . ip saddr != @allowed4 "
        "ether saddr . ip saddr != @leased4 goto drop_ip4",
        # IPv6
        f"{c} icmpv6 type {{ nd-router-advert, nd-redirect }} goto drop_ra",
        f"{c} ip6 saddr :: icmpv6 type "
        "{ nd-neighbor-solicit, mld-listener-report, mld2-listener-report } accept",
        f"{c} ether type ip6 ether saddr . ip6 saddr != @allowed6 "
        "ether saddr . ip6 saddr != @leased6 goto drop_ip6",
        # neighbour discovery: no extension headers, at most one option, the port's MAC
        f"{c} icmpv6 type {_ND} ip6 nexthdr != ipv6-icmp goto drop_nd",
        f"{c} icmpv6 type nd-router-solicit ip6 length != {{ 8, 16 }} goto drop_nd",
        f"{c} icmpv6 type nd-router-solicit ip6 length 16 @th,64,16 != 0x0101 goto drop_nd",
        f"{c} icmpv6 type nd-router-solicit ip6 length 16 iifname . @th,80,48 != @port_hw "
        "goto drop_nd",
        f"{c} icmpv6 type {_NS_NA} ip6 length != {{ 24, 32 }} goto drop_nd",
        f"{c} icmpv6 type nd-neighbor-solicit ip6 length 32 @th,192,16 != 0x0101 goto drop_nd",
        f"{c} icmpv6 type nd-neighbor-advert ip6 length 32 @th,192,16 != 0x0201 goto drop_nd",
        f"{c} icmpv6 type {_NS_NA} ip6 length 32 iifname . @th,208,48 != @port_hw goto drop_nd",
        f"{c} icmpv6 type nd-neighbor-advert ether saddr . @th,64,128 != @target6 "
        "ether saddr . @th,64,128 != @leased_target6 goto drop_nd",
    ]


_SETS = {
    (4, "allowed"): ("allowed4",),
    (6, "allowed"): ("allowed6", "target6"),
    (4, "leased"): ("leased4",),
    (6, "leased"): ("leased6", "leased_target6"),
}


def port_guard_changes(
    g: PortGuard, add: bool, addresses: tuple[str, ...] = (), leased: tuple[str, ...] = ()
) -> list[ElementChange]:
    """The set elements of a guarded port (sent as raw netlink: see ``nft_elements``).

    Added in this order (and removed in reverse) so the port is only ``guarded`` once its MAC
    and addresses are in place. ``leased``: addresses its leases opened (removal only).
    """
    quote(g.ifname)  # the same names are accepted as in rules
    port, mac = ifname_key(g.ifname), mac_key(g.mac)

    def keyed(kind: str, family: int, found: tuple[str, ...]) -> list[ElementChange]:
        keys = tuple(concat(mac, ip_key(a)) for a in found if (6 if ":" in a else 4) == family)
        if not keys:
            return []
        return [ElementChange(add, "bridge", TABLE, name, keys) for name in _SETS[family, kind]]

    changes = [
        ElementChange(add, "bridge", TABLE, "port_mac", (concat(port, mac),)),
        ElementChange(add, "bridge", TABLE, "port_hw", (concat(port, mac),)),
    ]
    for family in (4, 6):
        changes += keyed("allowed", family, addresses)
        changes += keyed("leased", family, leased)
    changes.append(ElementChange(add, "bridge", TABLE, "guarded", (port,)))
    return changes if add else changes[::-1]


def host_guard_changes(mac: str, guarded: bool, isolated: bool, add: bool) -> list[ElementChange]:
    """The host-side elements of a port on any backend (``table inet virtnet``): its DHCP
    requests must carry its own MAC (guarded ports), and no routed hairpin (isolated ports)."""
    key = mac_key(mac)
    changes = []
    if guarded:
        changes.append(ElementChange(add, "inet", TABLE, "guest_hw", (concat(key, key),)))
        changes.append(ElementChange(add, "inet", TABLE, "guest_mac", (key,)))
    if isolated:  # a single field is not padded
        changes.append(ElementChange(add, "inet", TABLE, "isolated_mac", (key,)))
    return changes if add else changes[::-1]


def eui64_address(prefix: str, mac: str) -> str:
    """The address a guest forms from its MAC in a /64 (RFC 4291 appendix A): its link-local
    address in ``fe80::/64``, its SLAAC address in the network's prefix."""
    octets = bytes.fromhex(mac.replace(":", ""))
    eui64 = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    network = ipaddress.IPv6Network(prefix, strict=False)
    return str(network.network_address + int.from_bytes(eui64, "big"))


def eui64_link_local(mac: str) -> str:
    return eui64_address("fe80::/64", mac)


#: How many rules :func:`bridge_base` puts in the prerouting chain: a table with another
#: count was made by another version (or damaged), and is made again.
PREROUTING_RULES = sum(1 for s in bridge_base() if s.startswith(f"add rule {BRIDGE} prerouting "))
