"""A guest port's plug plan: a tap for a VM or a veth into a container's namespace."""

from __future__ import annotations

from typing import Any

from virtnet.errors import InvalidInput, Unsupported
from virtnet.model.network import ForwardMode, Network
from virtnet.model.port import AttachmentKind, NetworkPort, Plug
from virtnet.plan import Plan, Step
from virtnet.services.recipes import host_side_mac, port_extras, port_ifname
from virtnet.services.steps import CreateTap, CreateVeth, SetPortIsolated, SetUp


def plan_plug(net: Network, port: NetworkPort, status: dict[str, Any]) -> Plan:
    assert port.uuid is not None and port.mac is not None
    bridge = str(status["bridge"])
    a = port.attachment
    owned = net.mode is not ForwardMode.BRIDGE
    port.plug = Plug(type="network" if owned else "bridge", bridge=bridge)
    if a.kind is AttachmentKind.NONE:
        if a.ifname:
            raise InvalidInput(
                "an existing link cannot be plugged; ask for a tap or a veth",
                subject="port/attachment",
            )
        return Plan([], {"bridge": bridge})  # libvirt's model: the caller connects later
    a.ifname = a.ifname or port_ifname(port.uuid)
    steps: list[Step]
    if a.kind is AttachmentKind.TAP:
        steps = [CreateTap(a.ifname, bridge, host_side_mac(port.mac), a.owner_uid, net.mtu, owned)]
    elif a.kind is AttachmentKind.VETH:
        if not a.netns:
            raise InvalidInput("a veth port needs the guest's namespace", subject="port/netns")
        a.guest_ifname = a.guest_ifname or "eth0"
        steps = [CreateVeth(a.ifname, bridge, a.guest_ifname, a.netns, port.mac, net.mtu, owned)]
    else:
        raise Unsupported(
            f"the linuxbridge backend cannot make {a.kind.value} ports", subject="port/attachment"
        )
    if port.isolated:
        steps.append(SetPortIsolated(a.ifname))
    steps += port_extras(net, port, a.ifname, status)
    steps.append(SetUp(a.ifname))  # last: no frame enters the bridge before the guard is set
    return Plan(steps, {"ifname": a.ifname})
