"""Network and port objects -> libvirt's canonical XML.

The output matches what ``virsh net-dumpxml`` prints for the same definition: libvirt's
element order, attribute order, single quotes and two-space indentation (checked against
libvirt 9.0 in tests/unit/test_xml_roundtrip.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from virtnet.model.network import (
    DNSMASQ_NS,
    IP,
    Bandwidth,
    Dhcp,
    Dns,
    Lease,
    Network,
    PortGroup,
    Rate,
    Route,
    VirtualPort,
    Vlan,
)
from virtnet.xmlns import escape

_ESCAPES = {"'": "&apos;", '"': "&quot;"}
Attrs = Iterable[tuple[str, object]]
AttrList = list[tuple[str, object]]


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


class XmlWriter:
    """Writes indented elements line by line; attributes whose value is None are left out."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def _start(self, tag: str, attrs: Attrs) -> str:
        parts = [tag]
        parts += [f"{k}='{escape(str(v), _ESCAPES)}'" for k, v in attrs if v is not None]
        return "  " * self.depth + "<" + " ".join(parts)

    def empty(self, tag: str, attrs: Attrs = ()) -> None:
        self.lines.append(self._start(tag, attrs) + "/>")

    def open(self, tag: str, attrs: Attrs = ()) -> None:
        self.lines.append(self._start(tag, attrs) + ">")
        self.depth += 1

    def close(self, tag: str) -> None:
        self.depth -= 1
        self.lines.append("  " * self.depth + f"</{tag}>")

    def text(self, tag: str, text: str) -> None:
        self.lines.append("  " * self.depth + f"<{tag}>{escape(text)}</{tag}>")

    def raw(self, block: str) -> None:
        self.lines.extend("  " * self.depth + line for line in block.splitlines())

    def result(self) -> str:
        return "\n".join(self.lines) + "\n"


def format_network(net: Network) -> str:
    """Format ``net`` as libvirt's canonical ``<network>`` document."""
    w = XmlWriter()
    w.open(
        "network",
        [
            ("xmlns:dnsmasq", DNSMASQ_NS if net.dnsmasq_options else None),
            ("ipv6", "yes" if net.ipv6 else None),
            ("trustGuestRxFilters", _yes_no(net.trust_guest_rx_filters)),
        ],
    )
    w.text("name", net.name)
    if net.uuid:
        w.text("uuid", net.uuid)
    if net.title is not None:
        w.text("title", net.title)
    if net.description is not None:
        w.text("description", net.description)
    if net.metadata:
        w.open("metadata")
        w.raw(net.metadata)
        w.close("metadata")
    if net.forward is not None:
        _forward(w, net)
    if net.bridge is not None:
        b = net.bridge
        w.empty(
            "bridge",
            [
                ("name", b.name),
                ("zone", b.zone),
                ("stp", None if b.stp is None else ("on" if b.stp else "off")),
                ("delay", b.delay),
                ("macTableManager", b.mac_table_manager),
            ],
        )
    if net.mtu is not None:
        w.empty("mtu", [("size", net.mtu)])
    if net.mac:
        w.empty("mac", [("address", net.mac)])
    if net.domain is not None:
        w.empty(
            "domain",
            [
                ("name", net.domain.name),
                ("localOnly", _yes_no(net.domain.local_only)),
                ("register", _yes_no(net.domain.register)),
            ],
        )
    if net.dns is not None:
        _dns(w, net.dns)
    if net.vlan is not None:
        format_vlan(w, net.vlan)
    if net.bandwidth is not None:
        format_bandwidth(w, net.bandwidth)
    if net.port_isolated is not None:
        w.empty("port", [("isolated", _yes_no(net.port_isolated))])
    for ip in net.ips:
        _ip(w, ip)
    for route in net.routes:
        _route(w, route)
    if net.virtualport is not None:
        format_virtualport(w, net.virtualport)
    for group in net.portgroups:
        _portgroup(w, group)
    if net.dnsmasq_options:
        w.open("dnsmasq:options")
        for value in net.dnsmasq_options:
            w.empty("dnsmasq:option", [("value", value)])
        w.close("dnsmasq:options")
    w.close("network")
    return w.result()


def _forward(w: XmlWriter, net: Network) -> None:
    fwd = net.forward
    assert fwd is not None
    attrs: AttrList = [
        ("dev", fwd.dev),
        ("mode", fwd.mode.value),
        ("managed", _yes_no(fwd.managed)),
    ]
    nat = fwd.nat
    has_nat = nat is not None and (
        nat.ipv6 is not None or nat.address_start is not None or nat.port_start is not None
    )
    has_driver = fwd.driver_name is not None or fwd.driver_model is not None
    if not (has_nat or fwd.interfaces or has_driver or fwd.pfs or fwd.addresses):
        w.empty("forward", attrs)
        return
    w.open("forward", attrs)
    if has_driver:
        w.empty("driver", [("name", fwd.driver_name), ("model", fwd.driver_model)])
    for pf in fwd.pfs:
        w.empty("pf", [("dev", pf)])
    if nat is not None and has_nat:
        if nat.address_start is None and nat.port_start is None:
            w.empty("nat", [("ipv6", _yes_no(nat.ipv6))])
        else:
            w.open("nat", [("ipv6", _yes_no(nat.ipv6))])
            if nat.address_start is not None:
                w.empty("address", [("start", nat.address_start), ("end", nat.address_end)])
            if nat.port_start is not None:
                w.empty("port", [("start", nat.port_start), ("end", nat.port_end)])
            w.close("nat")
    for dev in fwd.interfaces:
        w.empty("interface", [("dev", dev)])
    for a in fwd.addresses:
        w.empty("address", [("type", "pci"), ("domain", a.domain), ("bus", a.bus),
                            ("slot", a.slot), ("function", a.function)])  # fmt: skip
    w.close("forward")


def _dns(w: XmlWriter, dns: Dns) -> None:
    attrs: AttrList = [
        ("enable", _yes_no(dns.enable)),
        ("forwardPlainNames", _yes_no(dns.forward_plain_names)),
    ]
    if not (dns.forwarders or dns.txts or dns.srvs or dns.hosts):
        if dns.enable is not None or dns.forward_plain_names is not None:
            w.empty("dns", attrs)
        return
    w.open("dns", attrs)
    for f in dns.forwarders:
        w.empty("forwarder", [("domain", f.domain), ("addr", f.addr)])
    for t in dns.txts:
        w.empty("txt", [("name", t.name), ("value", t.value)])
    for s in dns.srvs:
        w.empty(
            "srv",
            [
                ("service", s.service),
                ("protocol", s.protocol),
                ("domain", s.domain),
                ("target", s.target),
                ("port", s.port),
                ("priority", s.priority),
                ("weight", s.weight),
            ],
        )
    for h in dns.hosts:
        w.open("host", [("ip", h.ip)])
        for name in h.hostnames:
            w.text("hostname", name)
        w.close("host")
    w.close("dns")


def format_vlan(w: XmlWriter, vlan: Vlan) -> None:
    w.open("vlan", [("trunk", "yes" if vlan.trunk else None)])
    for tag in vlan.tags:
        w.empty("tag", [("id", tag.id), ("nativeMode", tag.native_mode)])
    w.close("vlan")


def _rate(w: XmlWriter, tag: str, rate: Rate) -> None:
    w.empty(
        tag,
        [
            ("average", rate.average),
            ("peak", rate.peak),
            ("floor", rate.floor),
            ("burst", rate.burst),
        ],
    )


def format_bandwidth(w: XmlWriter, bw: Bandwidth) -> None:
    if bw.inbound is None and bw.outbound is None:
        return
    w.open("bandwidth")
    if bw.inbound is not None:
        _rate(w, "inbound", bw.inbound)
    if bw.outbound is not None:
        _rate(w, "outbound", bw.outbound)
    w.close("bandwidth")


def _lease_attrs(lease: Lease) -> Attrs:
    return [("expiry", lease.expiry), ("unit", lease.unit)]


def _dhcp(w: XmlWriter, dhcp: Dhcp) -> None:
    w.open("dhcp")
    for r in dhcp.ranges:
        attrs: AttrList = [("start", r.start), ("end", r.end)]
        if r.lease is None:
            w.empty("range", attrs)
        else:
            w.open("range", attrs)
            w.empty("lease", _lease_attrs(r.lease))
            w.close("range")
    for h in dhcp.hosts:
        attrs = [("mac", h.mac), ("id", h.id), ("name", h.name), ("ip", h.ip)]
        if h.lease is None:
            w.empty("host", attrs)
        else:
            w.open("host", attrs)
            w.empty("lease", _lease_attrs(h.lease))
            w.close("host")
    if dhcp.bootp is not None:
        w.empty("bootp", [("file", dhcp.bootp.file), ("server", dhcp.bootp.server)])
    w.close("dhcp")


def _ip(w: XmlWriter, ip: IP) -> None:
    # libvirt always writes <ip> as an open/close pair, even with nothing inside.
    w.open(
        "ip",
        [
            ("family", ip.family),
            ("address", ip.address),
            ("netmask", ip.netmask),
            ("prefix", ip.prefix),
            ("localPtr", _yes_no(ip.local_ptr)),
        ],
    )
    if ip.tftp_root is not None:
        w.empty("tftp", [("root", ip.tftp_root)])
    if ip.dhcp is not None and (ip.dhcp.ranges or ip.dhcp.hosts or ip.dhcp.bootp):
        _dhcp(w, ip.dhcp)
    w.close("ip")


def _route(w: XmlWriter, route: Route) -> None:
    w.empty(
        "route",
        [
            ("family", route.family),
            ("address", route.address),
            ("netmask", route.netmask),
            ("prefix", route.prefix),
            ("gateway", route.gateway),
            ("metric", route.metric),
        ],
    )


_PARAM_ORDER = ("managerid", "typeid", "typeidversion", "instanceid", "interfaceid", "profileid")


def format_virtualport(w: XmlWriter, vp: VirtualPort) -> None:
    attrs: AttrList = [("type", vp.type)]
    if not vp.parameters:
        w.empty("virtualport", attrs)
        return
    w.open("virtualport", attrs)
    w.empty("parameters", [(k, vp.parameters[k]) for k in _PARAM_ORDER if k in vp.parameters])
    w.close("virtualport")


def _portgroup(w: XmlWriter, group: PortGroup) -> None:
    attrs: AttrList = [
        ("name", group.name),
        ("default", "yes" if group.default else None),
        ("trustGuestRxFilters", _yes_no(group.trust_guest_rx_filters)),
    ]
    if (
        group.vlan is None
        and group.virtualport is None
        and group.bandwidth is None
        and group.port_isolated is None
    ):
        w.empty("portgroup", attrs)
        return
    w.open("portgroup", attrs)
    if group.vlan is not None:
        format_vlan(w, group.vlan)
    if group.virtualport is not None:
        format_virtualport(w, group.virtualport)
    if group.bandwidth is not None:
        format_bandwidth(w, group.bandwidth)
    if group.port_isolated is not None:
        w.empty("port", [("isolated", _yes_no(group.port_isolated))])
    w.close("portgroup")
