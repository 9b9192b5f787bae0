"""libvirt's ``<networkport>`` XML <-> :class:`~virtnet.model.port.NetworkPort`.

Element order follows libvirt's virNetworkPortDefFormat. What virtnet made for the guest (a
tap, a veth in a namespace, a macvtap device) has no libvirt element; it is written as
``<virtnet:attachment>`` in virtnet's own namespace, which libvirt-style readers skip.
"""

from __future__ import annotations

from virtnet.errors import InvalidInput
from virtnet.model.names import check_host_address, check_ifname, check_mac, check_uuid
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort, Plug, PortOwner
from virtnet.model.xml_format import (
    XmlWriter,
    format_bandwidth,
    format_virtualport,
    format_vlan,
)
from virtnet.model.xml_node import Node, parse_document
from virtnet.model.xml_parse import parse_bandwidth, parse_virtualport, parse_vlan
from virtnet.xmlns import ATTACHMENT_NS

_PLUG_TYPES = ("network", "bridge", "direct", "hostdev-pci")


def format_port(port: NetworkPort) -> str:
    w = XmlWriter()
    w.open("networkport")
    if port.uuid:
        w.text("uuid", port.uuid)
    if port.owner is not None:
        w.open("owner")
        w.text("name", port.owner.name)
        w.text("uuid", port.owner.uuid)
        w.close("owner")
    if port.portgroup:
        w.text("group", port.portgroup)
    if port.mac:
        w.empty("mac", [("address", port.mac)])
    if port.virtualport is not None:
        format_virtualport(w, port.virtualport)
    if port.bandwidth is not None:
        format_bandwidth(w, port.bandwidth)
    if port.vlan is not None:
        format_vlan(w, port.vlan)
    if port.isolated is not None:
        w.empty("port", [("isolated", "yes" if port.isolated else "no")])
    if port.trust_guest_rx_filters is not None:
        w.empty("rxfilters", [("trustGuest", "yes" if port.trust_guest_rx_filters else "no")])
    if port.plug is not None:
        p = port.plug
        w.empty(
            "plug",
            [
                ("type", p.type),
                ("bridge", p.bridge),
                ("macTableManager", p.mac_table_manager),
                ("dev", p.dev),
                ("mode", p.mode),
            ],
        )
    a = port.attachment
    if a.kind != AttachmentKind.NONE or a.spoof_check is not None or a.addresses:
        attrs: list[tuple[str, object]] = [
            ("xmlns:virtnet", ATTACHMENT_NS),
            ("kind", a.kind.value),
            ("ifname", a.ifname),
            ("netns", a.netns),
            ("guestIfname", a.guest_ifname),
            ("ownerUid", a.owner_uid),
            ("device", a.device),
            ("spoofCheck", None if a.spoof_check is None else "yes" if a.spoof_check else "no"),
        ]
        if not a.addresses:
            w.empty("virtnet:attachment", attrs)
        else:
            w.open("virtnet:attachment", attrs)
            for address in a.addresses:
                w.empty("virtnet:ip", [("address", address)])
            w.close("virtnet:attachment")
    w.close("networkport")
    return w.result()


def parse_port(text: str | bytes, network: str) -> NetworkPort:
    """Parse a ``<networkport>`` for ``network``; errors name the element path."""
    root = Node(parse_document(text, "networkport"), "networkport")
    port = NetworkPort(network=network)
    if (uuid := root.child("uuid")) is not None:
        port.uuid = check_uuid(uuid.text(), "networkport/uuid")
        uuid.finish()
    if (owner := root.child("owner")) is not None:
        name, owner_uuid = owner.child("name"), owner.child("uuid")
        if name is None or owner_uuid is None:
            raise InvalidInput("needs <name> and <uuid>", subject="networkport/owner")
        port.owner = PortOwner(name.text(), check_uuid(owner_uuid.text(), "networkport/owner/uuid"))
        name.finish()
        owner_uuid.finish()
        owner.finish()
    if (group := root.child("group")) is not None:
        port.portgroup = group.text()
        group.finish()
    if (mac := root.child("mac")) is not None:
        port.mac = check_mac(mac.req("address"), "networkport/mac/@address")
        mac.finish()
    if (vp := root.child("virtualport")) is not None:
        port.virtualport = parse_virtualport(vp)
    if (bw := root.child("bandwidth")) is not None:
        port.bandwidth = parse_bandwidth(bw)
    if (vlan := root.child("vlan")) is not None:
        port.vlan = parse_vlan(vlan)
    if (iso := root.child("port")) is not None:
        port.isolated = iso.bool_attr("isolated")
        iso.finish()
    if (rx := root.child("rxfilters")) is not None:
        port.trust_guest_rx_filters = rx.bool_attr("trustGuest")
        rx.finish()
    if (plug := root.child("plug")) is not None:
        port.plug = Plug(
            type=plug.choice_attr("type", _PLUG_TYPES) or "network",
            bridge=plug.attr("bridge"),
            mac_table_manager=plug.attr("macTableManager"),
            dev=plug.attr("dev"),
            mode=plug.attr("mode"),
        )
        plug.finish()
    if (att := root.child(f"{{{ATTACHMENT_NS}}}attachment")) is not None:
        kind = att.choice_attr("kind", tuple(k.value for k in AttachmentKind))
        port.attachment = Attachment(
            kind=AttachmentKind(kind or "none"),
            ifname=att.attr("ifname"),
            netns=att.attr("netns"),
            guest_ifname=att.attr("guestIfname"),
            owner_uid=att.int_attr("ownerUid"),
            device=att.attr("device"),
            spoof_check=att.bool_attr("spoofCheck"),
        )
        for field, value in (
            ("ifname", port.attachment.ifname),
            ("guestIfname", port.attachment.guest_ifname),
        ):
            if value is not None:
                check_ifname(value, f"networkport/attachment/@{field}")
        for ip in att.children(f"{{{ATTACHMENT_NS}}}ip"):
            subject = "networkport/attachment/ip/@address"
            port.attachment.addresses.append(check_host_address(ip.req("address"), subject))
            ip.finish()
        att.finish()
    root.finish()
    return port
