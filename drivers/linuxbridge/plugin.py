"""The hook implementations: describe, claim, plan a network, plan a port, check drift."""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

from virtnet.backend import (
    FEATURE_ANTI_SPOOFING,
    FEATURE_BANDWIDTH,
    FEATURE_PORT_ISOLATION,
    BackendInfo,
    Host,
    Readiness,
)
from virtnet.hookspecs import hookimpl
from virtnet.model.network import ForwardMode, Network
from virtnet.model.port import AttachmentKind, NetworkPort
from virtnet.plan import Plan
from virtnet_linuxbridge import drift, network, port

NAME = "linuxbridge"
MODES = frozenset(
    {
        ForwardMode.NAT,
        ForwardMode.ROUTE,
        ForwardMode.OPEN,
        ForwardMode.ISOLATED,
        ForwardMode.BRIDGE,
    }
)


class LinuxBridgeBackend:
    @hookimpl
    def virtnet_backend_describe(self, host: Host) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            version="0.1.0",
            summary="Linux kernel bridge; nftables firewall and dnsmasq from the core",
            forward_modes=MODES,
            attachments=frozenset({AttachmentKind.TAP, AttachmentKind.VETH, AttachmentKind.NONE}),
            features=frozenset({FEATURE_PORT_ISOLATION, FEATURE_BANDWIDTH, FEATURE_ANTI_SPOOFING}),
            readiness=_probe(),
        )

    @hookimpl(trylast=True)
    def virtnet_network_claim(self, network: Network) -> str | None:
        if network.mode not in MODES:
            return None
        if network.mode is ForwardMode.BRIDGE and not (network.bridge and network.bridge.name):
            return None  # bridge mode onto a NIC (macvtap): not a Linux bridge's job
        if network.virtualport is not None and network.virtualport.type == "openvswitch":
            return None  # an Open vSwitch bridge: not ours
        return NAME

    @hookimpl
    def virtnet_network_plan_start(self, network: Network, host: Host) -> Plan:
        return _plan_start(network, host)

    @hookimpl
    def virtnet_port_plan_plug(
        self, network: Network, port: NetworkPort, host: Host, status: dict[str, Any]
    ) -> Plan:
        return _plan_plug(network, port, status)

    @hookimpl
    def virtnet_network_check(
        self, network: Network, host: Host, status: dict[str, Any]
    ) -> list[str]:
        return drift.check(network, host, status)


_plan_start = network.plan_start
_plan_plug = port.plan_plug


def _probe() -> Readiness:
    problems, notes = [], []
    if importlib.util.find_spec("nftables") is None:
        problems.append(
            "Python nftables bindings missing (Debian: python3-nftables, in a venv made with "
            "--system-site-packages)"
        )
    if shutil.which("dnsmasq") is None and not os.path.exists("/usr/sbin/dnsmasq"):
        notes.append("dnsmasq is not installed: networks with DHCP or DNS cannot start")
    if not os.path.exists("/dev/net/tun"):
        notes.append("/dev/net/tun is missing: tap ports cannot be made")
    if not os.path.exists("/proc/sys/net/bridge") and not os.path.exists("/sys/module/bridge"):
        notes.append("the bridge module is not loaded yet (the kernel loads it on first use)")
    notes.append("no VLAN tags: this backend does not use bridge VLAN filtering")
    return Readiness(tuple(problems), tuple(notes))
