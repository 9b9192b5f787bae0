"""libvirt network XML -> :class:`~virtnet.model.network.Network`.

Syntax is checked here (integers, yes/no, enumerations, required attributes, unknown
elements); meaning is checked in :mod:`virtnet.model.validate`. Errors name the element path.
"""

from __future__ import annotations

from lxml import etree

from virtnet.errors import InvalidInput
from virtnet.model.network import (
    DNSMASQ_NS,
    IP,
    Bandwidth,
    Bootp,
    Bridge,
    Dhcp,
    DhcpHost,
    DhcpRange,
    Dns,
    DnsForwarder,
    DnsHost,
    DnsSrv,
    DnsTxt,
    Domain,
    Forward,
    ForwardMode,
    Lease,
    NatRange,
    Network,
    PciAddress,
    PortGroup,
    Rate,
    Route,
    VirtualPort,
    Vlan,
    VlanTag,
)
from virtnet.model.xml_node import Node, parse_document

_FAMILIES = ("ipv4", "ipv6")
_LEASE_UNITS = ("seconds", "minutes", "hours")
_VIRTUALPORT_TYPES = ("openvswitch", "802.1Qbg", "802.1Qbh", "midonet")
_VIRTUALPORT_PARAMS = (
    "interfaceid",
    "profileid",
    "managerid",
    "typeid",
    "typeidversion",
    "instanceid",
)


def parse_network(text: str | bytes) -> Network:
    """Parse one ``<network>`` document. Raises :class:`InvalidInput` naming the bad field."""
    root = Node(parse_document(text, "network"), "network")
    name_node = root.child("name")
    if name_node is None:
        raise InvalidInput("element is required", subject="network/name")
    name_node.finish()
    net = Network(name=name_node.text())
    net.ipv6 = root.bool_attr("ipv6")
    net.trust_guest_rx_filters = root.bool_attr("trustGuestRxFilters")
    root.attr("connections")  # runtime-only counter libvirt writes; ignored on input
    if (uuid := root.child("uuid")) is not None:
        uuid.finish()
        net.uuid = uuid.text()
    if (title := root.child("title")) is not None:
        title.finish()
        net.title = title.raw_text() or None  # libvirt drops an empty one
        if net.title and "\n" in net.title:
            raise InvalidInput("a title is one line", subject="network/title")
    if (description := root.child("description")) is not None:
        description.finish()
        net.description = description.raw_text() or None
    if (meta := root.child("metadata")) is not None:
        net.metadata = _metadata(meta)
    if (fwd := root.child("forward")) is not None:
        net.forward = _forward(fwd)
    if (br := root.child("bridge")) is not None:
        net.bridge = Bridge(
            name=br.attr("name"),
            zone=br.attr("zone"),
            stp=br.bool_attr("stp"),
            delay=br.int_attr("delay", maximum=3600),
            mac_table_manager=br.choice_attr("macTableManager", ("kernel", "libvirt")),
        )
        br.finish()
    if (mtu := root.child("mtu")) is not None:
        net.mtu = mtu.int_attr("size", minimum=68, maximum=65535, required=True)
        mtu.finish()
    if (mac := root.child("mac")) is not None:
        net.mac = mac.req("address")
        mac.finish()
    if (dom := root.child("domain")) is not None:
        net.domain = Domain(
            name=dom.req("name"),
            local_only=dom.bool_attr("localOnly"),
            register=dom.bool_attr("register"),
        )
        dom.finish()
    if (dns := root.child("dns")) is not None:
        net.dns = _dns(dns)
    if (vlan := root.child("vlan")) is not None:
        net.vlan = parse_vlan(vlan)
    if (bw := root.child("bandwidth")) is not None:
        net.bandwidth = parse_bandwidth(bw)
    if (port := root.child("port")) is not None:
        net.port_isolated = port.bool_attr("isolated")
        port.finish()
    net.ips = [_ip(n) for n in root.children("ip")]
    net.routes = [_route(n) for n in root.children("route")]
    if (vp := root.child("virtualport")) is not None:
        net.virtualport = parse_virtualport(vp)
    net.portgroups = [_portgroup(n) for n in root.children("portgroup")]
    if (options := root.child(f"{{{DNSMASQ_NS}}}options")) is not None:
        for option in options.children(f"{{{DNSMASQ_NS}}}option"):
            net.dnsmasq_options.append(option.req("value"))
            option.finish()
        options.finish()
    root.finish()
    return net


def _metadata(node: Node) -> str | None:
    parts = []
    for child in node.take_all():
        if not isinstance(child.tag, str):
            continue
        copy = etree.fromstring(etree.tostring(child))
        copy.tail = None
        etree.indent(copy, space="  ")
        parts.append(etree.tostring(copy, encoding="unicode"))
    node.finish()
    return "\n".join(parts) if parts else None


def _forward(node: Node) -> Forward:
    mode = node.choice_attr("mode", tuple(m.value for m in ForwardMode if m != "isolated"))
    fwd = Forward(mode=ForwardMode(mode or "nat"), dev=node.attr("dev"))
    fwd.managed = node.bool_attr("managed")
    if (driver := node.child("driver")) is not None:
        fwd.driver_name = driver.attr("name")
        fwd.driver_model = driver.attr("model")
        driver.finish()
    for pf in node.children("pf"):
        fwd.pfs.append(pf.req("dev"))
        pf.finish()
    for address in node.children("address"):
        address.choice_attr("type", ("pci",))
        fwd.addresses.append(
            PciAddress(*(address.req(f) for f in ("domain", "bus", "slot", "function")))
        )
        address.finish()
    if (nat := node.child("nat")) is not None:
        fwd.nat = NatRange(ipv6=nat.bool_attr("ipv6"))
        if (addr := nat.child("address")) is not None:
            fwd.nat.address_start = addr.req("start")
            fwd.nat.address_end = addr.req("end")
            addr.finish()
        if (port := nat.child("port")) is not None:
            fwd.nat.port_start = port.int_attr("start", maximum=65535, required=True)
            fwd.nat.port_end = port.int_attr("end", maximum=65535, required=True)
            port.finish()
        nat.finish()
    for iface in node.children("interface"):
        fwd.interfaces.append(iface.req("dev"))
        iface.finish()
    node.finish()
    return fwd


def _lease(parent: Node) -> Lease | None:
    node = parent.child("lease")
    if node is None:
        return None
    expiry = node.int_attr("expiry", required=True)
    assert expiry is not None
    lease = Lease(expiry=expiry, unit=node.choice_attr("unit", _LEASE_UNITS))
    node.finish()
    return lease


def _ip(node: Node) -> IP:
    ip = IP(
        address=node.req("address"),
        family=node.choice_attr("family", _FAMILIES),
        prefix=node.int_attr("prefix", maximum=128),
        netmask=node.attr("netmask"),
        local_ptr=node.bool_attr("localPtr"),
    )
    if (tftp := node.child("tftp")) is not None:
        ip.tftp_root = tftp.req("root")
        tftp.finish()
    if (dhcp_node := node.child("dhcp")) is not None:
        dhcp = Dhcp()
        for r in dhcp_node.children("range"):
            dhcp.ranges.append(DhcpRange(start=r.req("start"), end=r.req("end"), lease=_lease(r)))
            r.finish()
        for h in dhcp_node.children("host"):
            dhcp.hosts.append(
                DhcpHost(
                    mac=h.attr("mac"),
                    id=h.attr("id"),
                    name=h.attr("name"),
                    ip=h.attr("ip"),
                    lease=_lease(h),
                )
            )
            h.finish()
        if (bootp := dhcp_node.child("bootp")) is not None:
            dhcp.bootp = Bootp(file=bootp.req("file"), server=bootp.attr("server"))
            bootp.finish()
        dhcp_node.finish()
        ip.dhcp = dhcp
    node.finish()
    return ip


def _route(node: Node) -> Route:
    route = Route(
        family=node.choice_attr("family", _FAMILIES),
        address=node.req("address"),
        prefix=node.int_attr("prefix", maximum=128),
        netmask=node.attr("netmask"),
        gateway=node.req("gateway"),
        metric=node.int_attr("metric", minimum=1),
    )
    node.finish()
    return route


def _dns(node: Node) -> Dns:
    dns = Dns(
        enable=node.bool_attr("enable"), forward_plain_names=node.bool_attr("forwardPlainNames")
    )
    for f in node.children("forwarder"):
        dns.forwarders.append(DnsForwarder(addr=f.attr("addr"), domain=f.attr("domain")))
        f.finish()
    for t in node.children("txt"):
        dns.txts.append(DnsTxt(name=t.req("name"), value=t.req("value")))
        t.finish()
    for s in node.children("srv"):
        dns.srvs.append(
            DnsSrv(
                service=s.req("service"),
                protocol=s.req("protocol"),
                domain=s.attr("domain"),
                target=s.attr("target"),
                port=s.int_attr("port", maximum=65535),
                priority=s.int_attr("priority", maximum=65535),
                weight=s.int_attr("weight", maximum=65535),
            )
        )
        s.finish()
    for h in node.children("host"):
        host = DnsHost(ip=h.req("ip"))
        for hn in h.children("hostname"):
            host.hostnames.append(hn.text())
            hn.finish()
        h.finish()
        dns.hosts.append(host)
    node.finish()
    return dns


def parse_vlan(node: Node) -> Vlan:
    vlan = Vlan(trunk=node.bool_attr("trunk"))
    for t in node.children("tag"):
        tag_id = t.int_attr("id", maximum=4095, required=True)
        assert tag_id is not None
        vlan.tags.append(
            VlanTag(id=tag_id, native_mode=t.choice_attr("nativeMode", ("tagged", "untagged")))
        )
        t.finish()
    node.finish()
    return vlan


def parse_virtualport(node: Node) -> VirtualPort:
    vp = VirtualPort(type=node.choice_attr("type", _VIRTUALPORT_TYPES))
    if (params := node.child("parameters")) is not None:
        for key in _VIRTUALPORT_PARAMS:
            if (value := params.attr(key)) is not None:
                vp.parameters[key] = value
        params.finish()
    node.finish()
    return vp


def parse_bandwidth(node: Node) -> Bandwidth:
    bw = Bandwidth()
    for direction in ("inbound", "outbound"):
        if (d := node.child(direction)) is not None:
            rate = Rate(
                average=d.int_attr("average"),
                peak=d.int_attr("peak"),
                burst=d.int_attr("burst"),
                floor=d.int_attr("floor"),
            )
            d.finish()
            setattr(bw, direction, rate)
    node.finish()
    return bw


def _portgroup(node: Node) -> PortGroup:
    group = PortGroup(
        name=node.req("name"),
        default=node.bool_attr("default"),
        trust_guest_rx_filters=node.bool_attr("trustGuestRxFilters"),
    )
    if (vlan := node.child("vlan")) is not None:
        group.vlan = parse_vlan(vlan)
    if (vp := node.child("virtualport")) is not None:
        group.virtualport = parse_virtualport(vp)
    if (bw := node.child("bandwidth")) is not None:
        group.bandwidth = parse_bandwidth(bw)
    if (port := node.child("port")) is not None:
        group.port_isolated = port.bool_attr("isolated")
        port.finish()
    node.finish()
    return group
