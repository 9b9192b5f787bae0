"""``net-update``: add, delete or modify one element of a network definition (pure).

The sections are virsh's: ``ip-dhcp-host``, ``ip-dhcp-range``, ``dns-host``, ``dns-srv``,
``dns-txt``, ``portgroup``, ``forward-interface``. The fragment is parsed by the same strict
reader as a whole network (it is placed where it belongs in a skeleton document), and the
result is validated as a whole, so an update can never store what ``net-define`` would
refuse.

As libvirt: a ``delete`` may name an entry by part of it (a DNS host by one of its
hostnames, an SRV record by any of its fields); no match is "not found", several are
"ambiguous". An added or modified DHCP host must be complete (its ``ip``): a modify replaces
the whole entry, so one given only a MAC would silently drop the name and address.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from typing import Any

from virtnet.errors import InvalidInput, NotFound
from virtnet.model.names import check_ip
from virtnet.model.network import IP, Dhcp, Dns, Network
from virtnet.model.xml_node import Node, parse_document
from virtnet.model.xml_parse import parse_network

COMMANDS = ("add", "add-first", "add-last", "delete", "modify")
SECTIONS = {
    "ip-dhcp-host": "host",
    "ip-dhcp-range": "range",
    "dns-host": "host",
    "dns-srv": "srv",
    "dns-txt": "txt",
    "portgroup": "portgroup",
    "forward-interface": "interface",
}
#: Sections whose live change dnsmasq picks up on SIGHUP (the rest need a dnsmasq restart).
RELOADABLE = frozenset({"ip-dhcp-host", "dns-host"})


def apply_update(
    net: Network, command: str, section: str, xml: str, parent_index: int | None = None
) -> Network:
    """A copy of ``net`` with the update applied (not yet validated)."""
    if command not in COMMANDS:
        raise InvalidInput(f"{command!r} is not one of {', '.join(COMMANDS)}", subject="command")
    if section not in SECTIONS:
        raise InvalidInput(
            f"{section!r} is not one of {', '.join(sorted(SECTIONS))}", subject="section"
        )
    tag = SECTIONS[section]
    parse_document(xml, tag)  # the fragment's root must be the section's element
    new = copy.deepcopy(net)
    if section.startswith("ip-dhcp-"):
        item = _parse_in(f"<ip address='::'><dhcp>{xml}</dhcp></ip>")
        ip_item = item.ips[0].dhcp
        assert ip_item is not None
        if section == "ip-dhcp-host":
            element: Any = ip_item.hosts[0]
            if command != "delete" and not element.ip:
                raise InvalidInput(
                    f"{command}: a host needs its ip (a modify replaces the whole entry)",
                    subject="ip-dhcp-host/@ip",
                )
            target_ip = _pick_ip(new, parent_index, element.ip, element.mac is not None)
            dhcp = target_ip.dhcp = target_ip.dhcp or Dhcp()
            _edit(dhcp.hosts, element, command, _host_key, section)
        else:
            element = ip_item.ranges[0]
            target_ip = _pick_ip(new, parent_index, element.start, None)
            dhcp = target_ip.dhcp = target_ip.dhcp or Dhcp()
            _edit(dhcp.ranges, element, command, lambda r: (r.start, r.end), section)
    elif command == "delete" and section in ("dns-host", "dns-srv"):
        dns = new.dns = new.dns or Dns()
        if section == "dns-host":
            _delete_dns_host(dns, xml)
        else:
            _delete_dns_srv(dns, xml)
    elif section == "forward-interface":
        _edit_forward_interface(new, command, xml)
    elif section.startswith("dns-"):
        dns_item = _parse_in(f"<dns>{xml}</dns>").dns
        assert dns_item is not None
        dns = new.dns = new.dns or Dns()
        if section == "dns-host":
            _edit(dns.hosts, dns_item.hosts[0], command, lambda h: h.ip, section)
        elif section == "dns-srv":
            key: Callable[[Any], Any] = lambda s: (s.service, s.protocol, s.domain, s.target)  # noqa: E731
            _edit(dns.srvs, dns_item.srvs[0], command, key, section)
        else:
            _edit(dns.txts, dns_item.txts[0], command, lambda t: t.name, section)
    else:
        group = _parse_in(xml).portgroups[0]
        _edit(new.portgroups, group, command, lambda g: g.name, section)
    return new


def _delete_dns_host(dns: Dns, xml: str) -> None:
    """libvirt's rule: an entry matches by its ip, or by any of the given hostnames."""
    node = Node(parse_document(xml, "host"), "dns-host")
    ip = node.attr("ip")
    wanted_ip = str(check_ip(ip, "dns-host/@ip")) if ip else None
    names = []
    for child in node.children("hostname"):
        names.append(child.text())
        child.finish()
    node.finish()
    if wanted_ip is None and not names:
        raise InvalidInput("give the host's ip or a hostname", subject="dns-host")
    found = [
        i
        for i, h in enumerate(dns.hosts)
        if h.ip == wanted_ip or any(n in h.hostnames for n in names)
    ]
    _remove_one(dns.hosts, found, "dns-host", wanted_ip or ", ".join(names))


def _delete_dns_srv(dns: Dns, xml: str) -> None:
    """An SRV record matches on every field the fragment gives."""
    node = Node(parse_document(xml, "srv"), "dns-srv")
    given = {f: node.attr(f) for f in ("service", "protocol", "domain", "target")}
    for f in ("port", "priority", "weight"):
        node.attr(f)  # accepted, and not compared (libvirt does not either)
    node.finish()
    if given["protocol"] is not None and given["protocol"] not in ("tcp", "udp"):
        raise InvalidInput(f"{given['protocol']!r} is not 'tcp' or 'udp'", subject="dns-srv")
    found = [
        i
        for i, s in enumerate(dns.srvs)
        if all(v is None or getattr(s, f) == v for f, v in given.items())
    ]
    described = ", ".join(f"{f}={v}" for f, v in given.items() if v is not None)
    _remove_one(dns.srvs, found, "dns-srv", described or "any record")


def _remove_one(items: list[Any], found: list[int], section: str, what: str) -> None:
    if not found:
        raise NotFound(f"no entry matches {what}", subject=section)
    if len(found) > 1:
        raise InvalidInput(f"{what} matches {len(found)} entries: be more specific",
                           subject=section)  # fmt: skip
    del items[found[0]]


def _edit_forward_interface(net: Network, command: str, xml: str) -> None:
    """``<forward><interface dev=.../>``; ``<forward dev>`` follows the first interface."""
    node = Node(parse_document(xml, "interface"), "forward-interface")
    dev = node.req("dev")
    node.finish()
    if net.forward is None:
        raise InvalidInput("the network has no <forward> element", subject="forward-interface")
    interfaces = net.forward.interfaces
    if not interfaces and net.forward.dev:
        interfaces.append(net.forward.dev)
    _edit(interfaces, dev, command, lambda d: d, "forward-interface")
    net.forward.dev = interfaces[0] if interfaces else None


def _parse_in(inner: str) -> Network:
    return parse_network(f"<network><name>update</name>{inner}</network>")


def _host_key(host: Any) -> Any:
    return host.mac or host.id or host.name


def _edit(
    items: list[Any], item: Any, command: str, key: Callable[[Any], Any], section: str
) -> None:
    matches = [i for i, existing in enumerate(items) if key(existing) == key(item)]
    if command in ("add", "add-last", "add-first"):
        if matches:
            raise InvalidInput(f"there is already such an entry ({key(item)})", subject=section)
        items.insert(0 if command == "add-first" else len(items), item)
    elif not matches:
        raise NotFound(f"no entry matches {key(item)}", subject=section)
    elif command == "delete":
        del items[matches[0]]
    else:
        items[matches[0]] = item


def _pick_ip(net: Network, index: int | None, address: str | None, v4_hint: bool | None) -> IP:
    """The ``<ip>`` an update goes to: ``--parent-index``, else the one whose subnet holds
    the address, else the first of the right family."""
    if index is not None:
        if not 0 <= index < len(net.ips):
            raise InvalidInput(f"the network has no <ip> number {index}", subject="parent-index")
        return net.ips[index]
    if address:
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidInput(f"{address!r} is not an IP address", subject="ip") from None
        for ip in net.ips:
            if addr in ipaddress.ip_network(f"{ip.address}/{ip.prefixlen}", strict=False):
                return ip
    want = 4 if v4_hint in (True, None) else 6
    for ip in net.ips:
        if ip.version == want:
            return ip
    raise InvalidInput("the network has no <ip> for this entry", subject="parent-index")
