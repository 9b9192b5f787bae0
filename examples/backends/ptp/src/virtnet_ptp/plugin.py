"""The hooks: who the backend is, which networks it serves, and their plans.

Everything here uses virtnet's documented API only: the value types of ``virtnet.backend``,
the model, and the core's steps and services (docs/backend-guide.md). Planning never touches
the host; the core runs the plans, labels what they make and undoes them.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from virtnet.backend import FEATURE_ANTI_SPOOFING, BackendInfo, Host, Readiness
from virtnet.errors import InvalidInput, Unsupported
from virtnet.hookspecs import API_VERSION, hookimpl
from virtnet.model.network import ForwardMode, Network
from virtnet.model.port import AttachmentKind, NetworkPort, Plug
from virtnet.plan import Plan, Step
from virtnet.services import Services, dnsmasq_conf
from virtnet.services.dnsmasq import lease_script, service_user
from virtnet.services.firewall_rules import network_rules
from virtnet.services.recipes import (
    dnsmasq_files,
    host_guard_steps,
    host_side_mac,
    l3_drift,
    subnets,
)
from virtnet.services.steps import (
    AddAddress,
    AddNetworkFirewall,
    CreateTap,
    CreateVeth,
    EnableForwarding,
    JoinNetworkFirewall,
    ReleaseSharedTables,
    RequireSubnetsFree,
    SetUp,
    StartDnsmasq,
)
from virtnet_ptp.steps import RoutedLink, RouteToGuest

NAME = "ptp"
MODES = frozenset({ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.ISOLATED})


def link_prefix(network: Network) -> str:
    """Every guest link of a network starts with this: ``vp`` and 5 hex digits of its uuid
    (the firewall and dnsmasq find the network's links by it; 8 more digits name a port)."""
    assert network.uuid is not None
    return "vp" + network.uuid.replace("-", "")[:5]


class PtpBackend:
    @hookimpl
    def virtnet_backend_describe(self, host: Host) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            version="0.1.0",
            summary="routed point-to-point: a link and a /32 host route per guest, no bridge",
            forward_modes=MODES,
            attachments=frozenset({AttachmentKind.VETH, AttachmentKind.TAP}),
            features=frozenset({FEATURE_ANTI_SPOOFING}),
            readiness=Readiness(notes=("IPv4 only",)),
            api_version=API_VERSION,
        )

    # No claim hook: this backend serves only networks that ask for it (net-define
    # --backend ptp), never one that the Linux bridge backend would serve as libvirt does.

    @hookimpl
    def virtnet_network_validate(self, network: Network) -> None:
        from virtnet.plugins import backend_override

        if backend_override(network) != NAME:
            return  # another backend's network
        if network.mode not in MODES:
            raise Unsupported(
                f"ptp serves nat, route and isolated networks, not {network.mode.value}",
                subject="network/forward/@mode",
            )
        if len(network.ips) != 1 or network.ips[0].version != 4:
            raise Unsupported("ptp needs exactly one IPv4 <ip>", subject="network/ip")

    @hookimpl
    def virtnet_network_plan_start(self, network: Network, host: Host) -> Plan:
        prefix = link_prefix(network)
        steps: list[Step] = [ReleaseSharedTables(), RequireSubnetsFree(subnets(network))]
        steps.append(EnableForwarding(ipv4=True))  # guests reach each other through the host
        info: dict[str, Any] = {"links": prefix}
        if dnsmasq_conf.needs_dnsmasq(network):
            files = dnsmasq_files(host, network)
            user, group = service_user()
            conf = dnsmasq_conf.render_conf(network, prefix, files, user, group, prefix=True)
            steps.append(
                StartDnsmasq(
                    files,
                    conf,
                    dnsmasq_conf.render_dhcp_hosts(network),
                    dnsmasq_conf.render_addn_hosts(network),
                    lease_script(route_leases=True),  # a lease is a host route to the guest
                )
            )
            info["dnsmasq"] = files.as_dict()
        rules = network_rules(network, prefix, prefix=True)
        steps.append(AddNetworkFirewall(rules))
        if rules is not None:
            info["firewall"] = rules.key
        return Plan(steps, info)

    @hookimpl
    def virtnet_network_check(
        self, network: Network, host: Host, status: dict[str, Any]
    ) -> list[str]:
        """What is missing of the network on the host: its firewall elements (the core's
        drift check of its journal covers the links) and its dnsmasq."""
        return Services.once(host, _drift, network, status)

    @hookimpl
    def virtnet_port_plan_plug(
        self, network: Network, port: NetworkPort, status: dict[str, Any]
    ) -> Plan:
        assert port.uuid is not None and port.mac is not None
        prefix = str(status["links"])
        a = port.attachment
        wanted = prefix + port.uuid.replace("-", "")[:8]
        if a.ifname and a.ifname != wanted:
            raise InvalidInput(
                f"ptp names its links itself ({wanted}): the network finds them by prefix",
                subject="port/attachment/@ifname",
            )
        a.ifname = wanted
        port.plug = Plug(type="network", dev=wanted)
        steps: list[Step]
        if a.kind is AttachmentKind.VETH or (a.kind is AttachmentKind.NONE and a.netns):
            if not a.netns:
                raise InvalidInput("a veth port needs the guest's namespace", subject="port/netns")
            a.kind = AttachmentKind.VETH
            a.guest_ifname = a.guest_ifname or "eth0"
            steps = [CreateVeth(a.ifname, None, a.guest_ifname, a.netns, port.mac, network.mtu)]
        elif a.kind in (AttachmentKind.TAP, AttachmentKind.NONE):
            a.kind = AttachmentKind.TAP
            steps = [CreateTap(a.ifname, None, host_side_mac(port.mac), a.owner_uid, network.mtu)]
        else:
            raise Unsupported(f"ptp cannot make {a.kind.value} ports", subject="port/attachment")
        gateway = network.ips[0].address
        steps += [AddAddress(a.ifname, gateway, 32), RoutedLink(a.ifname)]
        rules = network_rules(network, prefix, prefix=True)
        if rules is not None:
            steps.append(JoinNetworkFirewall(rules.key, a.ifname, rules))
        steps += host_guard_steps(network, port)
        steps.append(SetUp(a.ifname))  # nothing flows before the rules are in
        # then the routes to its declared addresses (the kernel routes over a link that is up)
        steps += [RouteToGuest(address, a.ifname) for address in _declared(a.addresses)]
        return Plan(steps, {"ifname": a.ifname})


def _drift(services: Services, network: Network, status: dict[str, Any]) -> list[str]:
    return l3_drift(services, network_rules(network, str(status["links"]), prefix=True), status)


def _declared(addresses: list[str]) -> list[str]:
    return [a for a in addresses if ipaddress.ip_address(a).version == 4]
