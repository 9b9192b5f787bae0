"""The hook implementations: describe, claim, plan a network, plan a port, check drift."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from virtnet.backend import BackendInfo, Host, Readiness
from virtnet.errors import Conflict, InvalidInput, Unsupported
from virtnet.hookspecs import hookimpl
from virtnet.model.network import ForwardMode, Network
from virtnet.model.port import AttachmentKind, NetworkPort, Plug
from virtnet.plan import Plan, Step
from virtnet.services import Services
from virtnet.services.steps import CreateMacvlan, CreateMacvtap, RequireLinksUp, TapDeviceNode

NAME = "macvtap"
#: libvirt's forward mode -> the kernel's macvlan/macvtap mode
KERNEL_MODES = {
    ForwardMode.BRIDGE: "bridge",
    ForwardMode.PRIVATE: "private",
    ForwardMode.VEPA: "vepa",
    ForwardMode.PASSTHROUGH: "passthru",
}
HOST_REACH_NOTE = (
    "guests cannot reach the host through their own lower device (the kernel does not loop "
    "macvtap traffic back to it): give the host an address on a macvlan of that device, or "
    "reach it through another network"
)


class MacvtapBackend:
    @hookimpl
    def virtnet_backend_describe(self, host: Host) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            version="0.1.0",
            summary="direct attachment to a host NIC (macvtap for VMs, macvlan for containers)",
            forward_modes=frozenset(KERNEL_MODES),
            attachments=frozenset({AttachmentKind.MACVTAP, AttachmentKind.MACVLAN}),
            readiness=_probe(),
        )

    @hookimpl(trylast=True)
    def virtnet_network_claim(self, network: Network) -> str | None:
        if network.mode not in KERNEL_MODES or not network.forward_devices:
            return None
        if network.bridge is not None and network.bridge.name:
            return None  # bridge mode onto a host bridge: the Linux bridge backend's
        return NAME

    @hookimpl
    def virtnet_network_plan_start(self, network: Network) -> Plan:
        devices = network.forward_devices
        if not devices:
            raise InvalidInput("a direct network needs a forward device", subject="network/forward")
        if network.forward is not None and (network.forward.pfs or network.forward.addresses):
            raise Unsupported(
                "the macvtap backend cannot take SR-IOV virtual functions (<pf>, <address>)",
                subject="network/forward",
            )
        if network.ips:
            raise Unsupported(
                f"forward mode '{network.mode.value}': the host has no address on a direct "
                "network, so it cannot serve <ip>",
                subject="network/ip",
            )
        return Plan(
            [RequireLinksUp(tuple(devices))],
            {"devices": devices, "mode": KERNEL_MODES[network.mode]},
        )

    @hookimpl
    def virtnet_port_plan_plug(
        self, network: Network, port: NetworkPort, host: Host, status: dict[str, Any]
    ) -> Plan:
        return plan_plug(network, port, host, status)

    @hookimpl
    def virtnet_network_check(self, host: Host, status: dict[str, Any]) -> list[str]:
        return Services.once(host, _check, list(status.get("devices", [])))


def plan_plug(net: Network, port: NetworkPort, host: Host, status: dict[str, Any]) -> Plan:
    assert port.uuid is not None and port.mac is not None
    mode = KERNEL_MODES[net.mode]
    devices = list(status["devices"])
    recorded = port.plug.dev if port.plug is not None else None
    if recorded is not None and recorded in devices:
        device = recorded  # a port planned again (drift repair) keeps its device
    else:
        device = _pick_device(devices, dict(status.get("plug_devices", {})), net)
    port.plug = Plug(type="direct", dev=device, mode=net.mode.value)
    a = port.attachment
    # what a caller asks for a VM (a tap) or a container (a veth), made the direct way
    if a.kind in (AttachmentKind.NONE, AttachmentKind.TAP, AttachmentKind.VETH):
        a.kind = AttachmentKind.MACVLAN if a.netns else AttachmentKind.MACVTAP
    steps: list[Step]
    if a.kind is AttachmentKind.MACVTAP:
        if a.netns:
            raise InvalidInput("a macvtap port is for a VM: no namespace", subject="port/netns")
        a.ifname = a.ifname or "mvt" + port.uuid.replace("-", "")[:12]
        a.device = str(host.run_path("dev", f"tap-{port.uuid}"))
        steps = [
            CreateMacvtap(a.ifname, device, mode, port.mac),
            TapDeviceNode(a.ifname, a.device, a.owner_uid),
        ]
    elif a.kind is AttachmentKind.MACVLAN:
        if not a.netns:
            raise InvalidInput("a macvlan port needs the guest's namespace", subject="port/netns")
        a.guest_ifname = a.guest_ifname or "eth0"
        a.ifname = None
        steps = [CreateMacvlan(a.guest_ifname, device, mode, port.mac, a.netns)]
    else:
        raise Unsupported(
            f"the macvtap backend cannot make {a.kind.value} ports (use macvtap or macvlan)",
            subject="port/attachment",
        )
    return Plan(steps, {"dev": device})


def _pick_device(devices: list[str], in_use: dict[str, int], net: Network) -> str:
    """libvirt's rule: the pool device with the fewest ports; passthrough needs a free one."""
    if net.mode is ForwardMode.PASSTHROUGH:
        free = [d for d in devices if not in_use.get(d)]
        if not free:
            raise Conflict(
                f"every device of network {net.name!r} is already passed through to a guest "
                f"({', '.join(devices)})",
                subject="port",
            )
        return free[0]
    return min(devices, key=lambda d: (in_use.get(d, 0), devices.index(d)))


def _check(services: Services, devices: list[str]) -> list[str]:
    problems = []
    for device in devices:
        if services.netlink.index(device) is None:
            problems.append(f"forward device {device} is missing")
        elif not services.netlink.is_up(device):
            problems.append(f"forward device {device} is down")
    return problems


def _probe() -> Readiness:
    problems = []
    if not (Path("/sys/module/macvlan").exists() or Path("/proc/sys/net").exists()):
        problems.append("no macvlan support in this kernel")
    if not os.path.exists("/usr/sbin/ip") and not os.path.exists("/sbin/ip"):
        problems.append("iproute2's ip is needed to find a macvtap's character device")
    return Readiness(tuple(problems), (HOST_REACH_NOTE,))
