"""Semantic checks of a network definition, alone and against the other defined networks.

Every check raises :class:`InvalidInput` (or :class:`Conflict` for clashes with other
networks) whose subject is the XML path of the offending element or attribute. Nothing here
touches the host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from virtnet.errors import Conflict, InvalidInput
from virtnet.model.names import (
    check_dns_name,
    check_host_address,
    check_ifname,
    check_ip,
    check_mac,
    check_network_name,
    check_uuid,
    unusable_reason,
)
from virtnet.model.network import IP, ForwardMode, Network, Vlan

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: a DHCP client id as libvirt writes it: hex bytes separated by colons (dnsmasq's ``id:``)
_ZONE = re.compile(r"[A-Za-z0-9_-]{1,17}")  # firewalld's rule for zone names
_DUID = re.compile(r"[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2})*")


def _path(tag: str, index: int, count: int) -> str:
    return f"{tag}[{index}]" if count > 1 else tag


def validate_network(net: Network) -> None:
    """Check one definition on its own."""
    check_network_name(net.name)
    if net.uuid:
        net.uuid = check_uuid(net.uuid, "network/uuid")
    if net.mac:
        net.mac = check_mac(net.mac, "network/mac/@address")
    if net.bridge and net.bridge.zone is not None and not _ZONE.fullmatch(net.bridge.zone):
        raise InvalidInput(
            f"{net.bridge.zone!r} is not a firewalld zone name (letters, digits, '_', '-'; "
            "at most 17)",
            subject="network/bridge/@zone",
        )
    if net.bridge and net.bridge.name:
        name = net.bridge.name
        if name.count("%") > 1 or ("%" in name and "%d" not in name):
            raise InvalidInput(
                f"{name!r}: '%' is only allowed once, as the template '%d'",
                subject="network/bridge/@name",
            )
        check_ifname(name.replace("%d", "0"), "network/bridge/@name")
    for i, dev in enumerate(net.forward_devices):
        check_ifname(dev, "network/forward/@dev" if i == 0 else "network/forward/interface/@dev")
    if net.forward and len(set(net.forward.interfaces)) != len(net.forward.interfaces):
        raise InvalidInput("an interface is listed twice", subject="network/forward/interface")
    if net.domain:
        check_dns_name(net.domain.name, "network/domain/@name")
    for value in net.dnsmasq_options:
        if not value.isprintable() or not value.strip():
            raise InvalidInput(f"{value!r}: one printable dnsmasq option line",
                               subject="network/dnsmasq:options/option/@value")  # fmt: skip
    _check_mode_fits(net)
    _check_nat(net)
    v4_dhcp = v6_dhcp = 0
    for i, ip in enumerate(net.ips, 1):
        path = "network/" + _path("ip", i, len(net.ips))
        _check_ip(ip, path)
        if ip.dhcp and (ip.dhcp.ranges or ip.dhcp.hosts):
            if ip.version == 4:
                v4_dhcp += 1
            else:
                v6_dhcp += 1
            if v4_dhcp > 1 or v6_dhcp > 1:
                raise InvalidInput(
                    f"only one IPv{ip.version} <ip> may have DHCP", subject=f"{path}/dhcp"
                )
    _check_overlaps_within(net)
    _check_routes(net)
    _check_dns(net)
    if net.vlan:
        _check_vlan(net.vlan, "network/vlan")
    defaults = [g.name for g in net.portgroups if g.default]
    if len(defaults) > 1:
        raise InvalidInput(
            f"more than one default portgroup ({', '.join(defaults)})", subject="network/portgroup"
        )
    seen: set[str] = set()
    for group in net.portgroups:
        if group.name in seen:
            raise InvalidInput(f"duplicate name {group.name!r}", subject="network/portgroup/@name")
        seen.add(group.name)
        if group.vlan:
            _check_vlan(group.vlan, f"network/portgroup[@name='{group.name}']/vlan")


@dataclass(frozen=True)
class Footprint:
    """What of a network another one may clash with, in a form compared in a microsecond:
    its name, uuid, own bridge and subnets (as ``(version, first, last)`` integers). An
    embedder keeps one per network (virtnet's API caches them with the parsed XML), so a
    thousand networks cost a new one a millisecond, not the 10 ms of ``ipaddress``."""

    name: str
    uuid: str | None
    bridge: str | None
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    spans: tuple[tuple[int, int, int], ...]


def footprint(net: Network) -> Footprint:
    own_bridge = net.mode.has_own_bridge and net.bridge is not None and net.bridge.name
    subnets = tuple(ip.subnet for ip in net.ips)
    spans = tuple((s.version, int(s.network_address), int(s.broadcast_address)) for s in subnets)
    return Footprint(net.name, net.uuid, net.bridge.name if own_bridge and net.bridge else None,
                     subnets, spans)  # fmt: skip


def validate_against(net: Network, others: Iterable[Network | Footprint]) -> None:
    """Check ``net`` does not clash with the other defined networks (names, uuids, subnets)."""
    mine = footprint(net)
    for item in others:
        other = item if isinstance(item, Footprint) else footprint(item)
        if other.name == mine.name:
            continue
        if other.uuid and other.uuid == mine.uuid:
            raise Conflict(
                f"uuid {net.uuid} is already used by network {other.name!r}", subject="network/uuid"
            )
        if mine.bridge and mine.bridge == other.bridge:
            raise Conflict(
                f"bridge {mine.bridge!r} is already used by network {other.name!r}",
                subject="network/bridge/@name",
            )
        for index, (version, first, last) in enumerate(mine.spans, 1):
            for theirs, (v, start, end) in zip(other.subnets, other.spans, strict=True):
                if v == version and start <= last and first <= end:
                    raise InvalidInput(
                        f"subnet {mine.subnets[index - 1]} overlaps {theirs} of network "
                        f"{other.name!r}",
                        subject="network/" + subnet_field(index, len(mine.spans)),
                    )


def subnet_field(index: int, count: int) -> str:
    """The field an overlap names: the address of the network's ``index``-th ``<ip>``."""
    return _path("ip", index, count) + "/@address"


def _check_mode_fits(net: Network) -> None:
    mode = net.mode
    where = f"forward mode '{mode.value}'"
    if mode.has_own_bridge:
        # several interfaces on nat/route: defined as libvirt does, refused at start
        if mode in (ForwardMode.ISOLATED, ForwardMode.OPEN) and net.forward_devices:
            raise InvalidInput(f"{where} takes no forward device", subject="network/forward/@dev")
        if net.virtualport is not None:
            raise InvalidInput(f"not allowed with {where}", subject="network/virtualport")
        if net.forward and (net.forward.pfs or net.forward.addresses or net.forward.driver_model):
            raise InvalidInput(
                f"<pf>, <address> and <driver> are not allowed with {where}",
                subject="network/forward",
            )
        return
    # bridge, private, vepa, passthrough, hostdev: the host has no address or services here
    # (an <ip> without a host bridge is defined as libvirt does, and refused at start)
    for present, field in (
        (mode is ForwardMode.BRIDGE and net.ips, "ip"),
        (net.dns, "dns"),
        (net.domain, "domain"),
        (net.mac, "mac"),
        (net.routes, "route"),
        (net.forward and net.forward.nat, "forward/nat"),
    ):
        if present:
            raise InvalidInput(
                f"not allowed with {where}: the host does not serve this network",
                subject=f"network/{field}",
            )
    has_bridge = bool(net.bridge and net.bridge.name)
    if mode == ForwardMode.BRIDGE:
        if has_bridge and net.forward_devices:
            raise InvalidInput(
                "give either <bridge name=...> or a forward device, not both",
                subject="network/forward/@dev",
            )
        ovs = net.virtualport is not None and net.virtualport.type == "openvswitch"
        if not has_bridge and not net.forward_devices and not ovs:  # OVS: checked at start
            raise InvalidInput(
                f"{where} needs <bridge name=...> or <forward dev=...>",
                subject="network/bridge/@name",
            )
        return
    if net.bridge is not None:
        raise InvalidInput(f"not allowed with {where}", subject="network/bridge")
    pci = bool(net.forward and (net.forward.pfs or net.forward.addresses))
    if pci and net.forward and len(set(net.forward.addresses)) != len(net.forward.addresses):
        raise InvalidInput("a PCI address is listed twice", subject="network/forward/address")
    if mode.is_direct and not net.forward_devices and not pci:
        raise InvalidInput(
            f"{where} needs a device: <forward dev=...> or <interface dev=...>",
            subject="network/forward/@dev",
        )
    if net.mtu is not None:
        raise InvalidInput(f"not allowed with {where}", subject="network/mtu")


def _check_nat(net: Network) -> None:
    nat = net.forward.nat if net.forward else None
    if nat is None:
        return
    if nat.address_start is not None:
        start = check_ip(nat.address_start, "network/forward/nat/address/@start", 4)
        end = check_ip(nat.address_end or "", "network/forward/nat/address/@end", 4)
        if int(start) > int(end):
            raise InvalidInput(
                f"start {start} is after end {end}", subject="network/forward/nat/address"
            )
    if nat.port_start is not None and nat.port_end is not None and nat.port_start > nat.port_end:
        raise InvalidInput(
            f"start {nat.port_start} is after end {nat.port_end}",
            subject="network/forward/nat/port",
        )


def _check_ip(ip: IP, path: str) -> None:
    addr = check_ip(ip.address, f"{path}/@address", ip.version)
    reason = unusable_reason(addr)
    if reason is None and addr.version == 6 and addr.is_link_local:
        reason = "is link-local (the bridge has its own; give a global or ULA prefix)"
    if reason:
        raise InvalidInput(f"{addr} {reason}", subject=f"{path}/@address")
    ip.address = str(addr)  # canonical text (libvirt writes f0:d::1 for f0:0d::1)
    if ip.prefix is not None and ip.netmask is not None:
        raise InvalidInput("give prefix or netmask, not both", subject=f"{path}/@netmask")
    if ip.netmask is not None:
        if ip.version == 6:
            raise InvalidInput("IPv6 takes prefix, not netmask", subject=f"{path}/@netmask")
        try:
            ipaddress.IPv4Network(f"0.0.0.0/{ip.netmask}")
        except ValueError:
            raise InvalidInput(
                f"{ip.netmask!r} is not a netmask", subject=f"{path}/@netmask"
            ) from None
    if ip.prefix is not None and ip.prefix > addr.max_prefixlen:
        raise InvalidInput(
            f"{ip.prefix} is longer than {addr.max_prefixlen}", subject=f"{path}/@prefix"
        )
    subnet = ip.subnet
    if subnet.num_addresses > 2 and addr in (subnet.network_address, subnet.broadcast_address):
        which = "network" if addr == subnet.network_address else "broadcast"
        raise InvalidInput(
            f"{addr} is the subnet's {which} address, not a host address",
            subject=f"{path}/@address",
        )
    if ip.tftp_root is not None:
        _check_file_value(ip.tftp_root, f"{path}/tftp/@root")
    if ip.local_ptr and ip.prefixlen % (8 if ip.version == 4 else 4):
        raise InvalidInput(
            f"localPtr needs a prefix that is a multiple of {8 if ip.version == 4 else 4} "
            f"(a reverse zone of whole labels), not {ip.prefixlen}",
            subject=f"{path}/@localPtr",
        )
    if ip.dhcp is None:
        return
    taken: list[tuple[int, int, str]] = []
    for i, r in enumerate(ip.dhcp.ranges, 1):
        rpath = f"{path}/dhcp/" + _path("range", i, len(ip.dhcp.ranges))
        start = _host_in_subnet(r.start, subnet, f"{rpath}/@start")
        end = _host_in_subnet(r.end, subnet, f"{rpath}/@end")
        r.start, r.end = str(start), str(end)
        first, last = int(start), int(end)
        if first > last:
            raise InvalidInput(f"start {start} is after end {end}", subject=rpath)
        if subnet.version == 4 and subnet.num_addresses > 2:
            for edge in (subnet.network_address, subnet.broadcast_address):
                if first <= int(edge) <= last:
                    raise InvalidInput(f"{start}-{end} contains {edge}", subject=rpath)
        if first <= int(addr) <= last:
            raise InvalidInput(f"{start}-{end} contains the host's address {addr}", subject=rpath)
        for other_first, other_last, other_path in taken:
            if first <= other_last and other_first <= last:
                raise InvalidInput(f"{start}-{end} overlaps {other_path}", subject=rpath)
        taken.append((first, last, rpath))
    macs: set[str] = set()
    ips: set[IPAddress] = set()
    names: set[str] = set()
    for i, h in enumerate(ip.dhcp.hosts, 1):
        hpath = f"{path}/dhcp/" + _path("host", i, len(ip.dhcp.hosts))
        if ip.version == 4 and not (h.mac or h.name):
            raise InvalidInput("an IPv4 host needs mac or name", subject=hpath)
        if ip.version == 6 and not (h.id or h.name):
            raise InvalidInput("an IPv6 host needs id or name", subject=hpath)
        if h.id is not None and not _DUID.fullmatch(h.id):
            raise InvalidInput(
                f"{h.id!r} is not a client id (hex bytes separated by ':')",
                subject=f"{hpath}/@id",
            )
        if ip.version == 6 and h.mac:
            raise InvalidInput(
                "IPv6 hosts are matched by id or name, not mac", subject=f"{hpath}/@mac"
            )
        if h.mac:
            mac = h.mac = check_mac(h.mac, f"{hpath}/@mac")
            if mac in macs:
                raise InvalidInput(f"duplicate MAC {mac}", subject=f"{hpath}/@mac")
            macs.add(mac)
        if h.name:
            check_dns_name(h.name, f"{hpath}/@name")
            if h.name in names and not h.mac:
                raise InvalidInput(f"duplicate name {h.name!r}", subject=f"{hpath}/@name")
            names.add(h.name)
        if h.ip:
            host_ip = _host_in_subnet(h.ip, subnet, f"{hpath}/@ip")
            h.ip = str(host_ip)
            if host_ip == addr:
                raise InvalidInput(f"{host_ip} is the host's own address", subject=f"{hpath}/@ip")
            if host_ip in ips:
                raise InvalidInput(f"duplicate IP {host_ip}", subject=f"{hpath}/@ip")
            ips.add(host_ip)
    if ip.dhcp.bootp:
        bootp = ip.dhcp.bootp
        if bootp.server:
            bootp.server = check_host_address(bootp.server, f"{path}/dhcp/bootp/@server", 4)
        _check_file_value(bootp.file, f"{path}/dhcp/bootp/@file")


def validate_port_addresses(net: Network, mac: str, addresses: list[str]) -> list[str]:
    """A guest's declared static addresses (``--ip``), canonical: each inside one of the
    network's subnets (or IPv6 link-local), a host address there, not the host's own and not
    reserved for another MAC."""
    found: list[str] = []
    for value in addresses:
        subject = "port/ip"
        addr = check_ip(value, subject)
        reason = unusable_reason(addr)
        if reason:
            raise InvalidInput(f"{addr} {reason}", subject=subject)
        if addr.version == 6 and addr in ipaddress.ip_network("fe80::/64"):
            found.append(str(addr))
            continue
        ip = next((i for i in net.ips if i.version == addr.version and addr in i.subnet), None)
        if ip is None:
            raise InvalidInput(f"{addr} is not on any of the network's subnets", subject=subject)
        _host_in_subnet(str(addr), ip.subnet, subject)
        if addr == ipaddress.ip_address(ip.address):
            raise InvalidInput(f"{addr} is the host's own address", subject=subject)
        for host in ip.dhcp.hosts if ip.dhcp else []:
            if host.ip and ipaddress.ip_address(host.ip) == addr and host.mac != mac:
                raise InvalidInput(f"{addr} is reserved for {host.mac}", subject=subject)
        found.append(str(addr))
    return sorted(set(found))


def _check_file_value(value: str, subject: str) -> None:
    """A path or file name that becomes one field of a dnsmasq option: dnsmasq splits
    fields at ',', reads '"' and '\\' as quoting and '#' after a space as a comment."""
    bad = sorted({c for c in value if c in ',"\\#' or not c.isprintable()})
    if bad or not value.strip() or value != value.strip():
        shown = " ".join(repr(c) for c in bad) or "leading or trailing spaces"
        raise InvalidInput(f"{value!r} is not usable here ({shown})", subject=subject)


def _host_in_subnet(
    value: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, subject: str
) -> IPAddress:
    """An address a guest can have: inside ``subnet``, not its network or broadcast address."""
    addr = check_ip(value, subject, subnet.version)
    if addr not in subnet:
        raise InvalidInput(f"{addr} is outside {subnet}", subject=subject)
    if subnet.version == 4 and subnet.num_addresses > 2:
        if addr == subnet.network_address:
            raise InvalidInput(f"{addr} is the subnet's network address", subject=subject)
        if addr == subnet.broadcast_address:
            raise InvalidInput(f"{addr} is the subnet's broadcast address", subject=subject)
    return addr


def _check_overlaps_within(net: Network) -> None:
    for i, a in enumerate(net.ips):
        for j, b in enumerate(net.ips[i + 1 :], i + 2):
            if a.version == b.version and a.subnet.overlaps(b.subnet):
                raise InvalidInput(
                    f"subnet {b.subnet} overlaps {a.subnet} of the same network",
                    subject="network/" + _path("ip", j, len(net.ips)) + "/@address",
                )


def _check_routes(net: Network) -> None:
    for i, route in enumerate(net.routes, 1):
        path = "network/" + _path("route", i, len(net.routes))
        version = 6 if route.family == "ipv6" else 4
        check_ip(route.address, f"{path}/@address", version)
        gateway = check_ip(route.gateway, f"{path}/@gateway", version)
        if not any(ip.version == version and gateway in ip.subnet for ip in net.ips):
            raise InvalidInput(
                f"gateway {gateway} is not on any of the network's subnets",
                subject=f"{path}/@gateway",
            )


def _check_dns(net: Network) -> None:
    dns = net.dns
    if dns is None:
        return
    if dns.enable is False and (dns.forwarders or dns.txts or dns.srvs or dns.hosts):
        raise InvalidInput("DNS is off (enable='no'): it cannot have records or forwarders",
                           subject="network/dns")  # fmt: skip
    for f in dns.forwarders:
        if f.addr:
            f.addr = str(check_ip(f.addr, "network/dns/forwarder/@addr"))
        if f.domain:
            check_dns_name(f.domain, "network/dns/forwarder/@domain")
        if not (f.addr or f.domain):
            raise InvalidInput("needs addr or domain", subject="network/dns/forwarder")
    for t in dns.txts:
        check_dns_name(t.name, "network/dns/txt/@name")
        if any(ord(c) < 32 for c in t.value):
            raise InvalidInput(
                "must not contain control characters", subject="network/dns/txt/@value"
            )
    for s in dns.srvs:
        if s.protocol not in ("tcp", "udp"):
            raise InvalidInput(
                f"{s.protocol!r} is not 'tcp' or 'udp'", subject="network/dns/srv/@protocol"
            )
        check_dns_name(s.service, "network/dns/srv/@service")
        if s.domain:
            check_dns_name(s.domain, "network/dns/srv/@domain")
        if s.target and s.target != ".":
            check_dns_name(s.target, "network/dns/srv/@target")
        for field, value in (("port", s.port), ("priority", s.priority), ("weight", s.weight)):
            if value is not None and not 0 <= value <= 65535:
                raise InvalidInput(
                    f"{value} is not in 0-65535", subject=f"network/dns/srv/@{field}"
                )
    for h in dns.hosts:
        h.ip = str(check_ip(h.ip, "network/dns/host/@ip"))
        if not h.hostnames:
            raise InvalidInput("needs at least one <hostname>", subject="network/dns/host")
        for name in h.hostnames:
            check_dns_name(name, "network/dns/host/hostname")


def _check_vlan(vlan: Vlan, path: str) -> None:
    if not vlan.tags:
        raise InvalidInput("needs at least one <tag>", subject=path)
    if len(vlan.tags) > 1 and vlan.trunk is False:
        raise InvalidInput("several tags need trunk='yes'", subject=f"{path}/@trunk")
    native = [t for t in vlan.tags if t.native_mode]
    if len(native) > 1:
        raise InvalidInput("only one tag may have nativeMode", subject=f"{path}/tag/@nativeMode")
    if native and len(vlan.tags) == 1 and not vlan.trunk:
        raise InvalidInput("nativeMode needs a trunk", subject=f"{path}/tag/@nativeMode")
    ids = [t.id for t in vlan.tags]
    if len(set(ids)) != len(ids):
        raise InvalidInput("duplicate tag id", subject=f"{path}/tag/@id")
