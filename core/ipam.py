"""Addresses for guests that do not run DHCP themselves (containers through CNI): taken from
the network's own DHCP range and held as a DHCP reservation of the guest's MAC.

A reservation rather than an address of its own: dnsmasq then never hands it to another guest,
the anti-spoofing guard lets the MAC use it as it lets any reservation, and the network's DNS
knows it; one list says who has what. Reservations made so are live only (the definition is
not changed) and go with the port.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from virtnet.errors import Conflict, InvalidInput, OperationFailed, Unsupported
from virtnet.model import parse_network
from virtnet.model.network import IP, Network

if TYPE_CHECKING:
    from virtnet.api import Virtnet


@dataclass(frozen=True)
class Assignment:
    """An address for a guest: what its interface and routes need, and its name servers."""

    address: str
    prefixlen: int
    gateway: str
    nameservers: tuple[str, ...]
    new: bool = False  # reserved by this request (not found already held by the MAC)

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "prefixlen": self.prefixlen, "gateway": self.gateway,
                "nameservers": list(self.nameservers), "new": self.new}  # fmt: skip


def dhcp_ipv4(net: Network) -> IP:
    """The network's IPv4 ``<ip>`` with a DHCP range: where such addresses come from."""
    for ip in net.ips:
        if ip.version == 4 and ip.dhcp is not None and ip.dhcp.ranges:
            return ip
    raise Unsupported(f"network {net.name!r} has no IPv4 DHCP range to take an address from")


def reserved(net: Network, mac: str) -> str | None:
    """The address reserved for ``mac`` on the network, if any."""
    ip = dhcp_ipv4(net)
    assert ip.dhcp is not None
    for host in ip.dhcp.hosts:
        if host.mac and host.mac.lower() == mac.lower() and host.ip:
            return host.ip
    return None


def pick(net: Network, used: Iterable[str]) -> str:
    """The first address of the DHCP ranges that nothing uses (leases, reservations, ports'
    declared addresses, the host's own)."""
    ip = dhcp_ipv4(net)
    assert ip.dhcp is not None
    taken = _taken(ip, used)
    for r in ip.dhcp.ranges:
        first, last = ipaddress.IPv4Address(r.start), ipaddress.IPv4Address(r.end)
        for value in range(int(first), int(last) + 1):
            candidate = str(ipaddress.IPv4Address(value))
            if candidate not in taken:
                return candidate
    raise OperationFailed(f"network {net.name!r}: no free address left in its DHCP ranges")


def _taken(ip: IP, used: Iterable[str]) -> set[str]:
    """``used`` (leases, ports' declared addresses), the reservations and the host's own."""
    assert ip.dhcp is not None
    return {str(a) for a in used} | {h.ip for h in ip.dhcp.hosts if h.ip} | {ip.address}


def assignment(net: Network, address: str) -> Assignment:
    ip = dhcp_ipv4(net)
    dns = () if net.dns is not None and net.dns.enable is False else (ip.address,)
    return Assignment(address, ip.prefixlen, ip.address, dns)


def reserve(api: Virtnet, network: str, mac: str, wanted: str | None = None) -> Assignment:
    """The address reserved for ``mac``, made now if there is none: ``wanted`` if it is free
    and in the network's subnet (anywhere in it: a static address need not be in the DHCP
    range), else the first free one of the range. The caller holds the host lock: choosing
    and reserving are one step."""
    active = api.store.active_network(network)
    if active is None:
        raise Conflict(f"network {network!r} is not active")
    net = parse_network(active.xml)
    address = reserved(net, mac)
    if address is not None and wanted is not None and address != wanted:
        raise Conflict(f"{mac} already holds {address} on {network!r}", subject="address")
    if address is None:
        used = {lease.ip for lease in api.dhcp_leases(network)}
        used |= {a for p in api.list_ports(network) for a in p.attachment.addresses}
        address = pick(net, used) if wanted is None else _free(net, wanted, used)
        host = f"<host mac='{mac}' ip='{address}'/>"
        api.update_network(network, "add", "ip-dhcp-host", host, live=True, config=False)
        return dataclasses.replace(assignment(net, address), new=True)
    return assignment(net, address)


def _free(net: Network, wanted: str, used: set[str]) -> str:
    ip = dhcp_ipv4(net)
    try:
        address = ipaddress.IPv4Address(wanted)
    except ValueError:
        raise InvalidInput(f"{wanted!r} is not an IPv4 address", subject="address") from None
    subnet = ip.subnet
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidInput(f"{wanted} is not a host address of {subnet}", subject="address")
    if str(address) in _taken(ip, used):
        raise Conflict(f"{wanted} is in use on network {net.name!r}", subject="address")
    return str(address)


def release(api: Virtnet, network: str, mac: str) -> bool:
    active = api.store.active_network(network)
    address = reserved(parse_network(active.xml), mac) if active is not None else None
    if address is None:
        return False
    host = f"<host mac='{mac}' ip='{address}'/>"
    api.update_network(network, "delete", "ip-dhcp-host", host, live=True, config=False)
    return True
