"""The hook implementations: describe, claim, the shared catalog, plan a network, plan a port,
check and reconcile."""

from __future__ import annotations

from typing import Any

from virtnet.backend import (
    FEATURE_ANTI_SPOOFING,
    FEATURE_BANDWIDTH,
    FEATURE_PORT_ISOLATION,
    BackendInfo,
    Host,
)
from virtnet.catalog import SharedCatalog
from virtnet.errors import InvalidInput, OperationFailed, Unsupported, VirtnetError
from virtnet.events import Watcher
from virtnet.hookspecs import API_VERSION, hookimpl
from virtnet.model.network import ForwardMode, Network
from virtnet.model.port import AttachmentKind, NetworkPort, Plug
from virtnet.plan import Plan, Step, UndoAction
from virtnet.services.recipes import host_side_mac, port_ifname
from virtnet.services.steps import (
    AddOvsPort,
    AwaitOvsInterface,
    CreateTap,
    CreateVeth,
    OutOfHostStack,
    SetUp,
)
from virtnet_ovn import nb
from virtnet_ovn.catalog import OvnCatalog
from virtnet_ovn.config import NB_ENV, OvnConfig, chassis_name, require_config
from virtnet_ovn.controller import controller_problem
from virtnet_ovn.readiness import probe
from virtnet_ovn.steps import UNDO_ACTIONS, AwaitPortBound, CreateLogicalPort, StartOvnNetwork
from virtnet_ovn.uplink import OVN_NS, parse_uplink

NAME = "ovn"
MODES = frozenset(
    {ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.OPEN, ForwardMode.ISOLATED,
     ForwardMode.BRIDGE}
)  # fmt: skip


class OvnBackend:
    @hookimpl
    def virtnet_backend_describe(self, host: Host) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            version="0.1.0",
            summary="networks spanning hosts on OVN: logical switches and routers in its "
            "northbound database, native DHCP, port security",
            forward_modes=MODES,
            attachments=frozenset({AttachmentKind.TAP, AttachmentKind.VETH}),
            features=frozenset({FEATURE_PORT_ISOLATION, FEATURE_ANTI_SPOOFING, FEATURE_BANDWIDTH}),
            readiness=probe(OvnConfig.from_env()),
            api_version=API_VERSION,
        )

    @hookimpl
    def virtnet_shared_catalog(self) -> SharedCatalog | None:
        config = OvnConfig.from_env()
        return OvnCatalog(config, NAME) if config is not None else None

    @hookimpl
    def virtnet_network_claim(self, network: Network) -> str | None:
        """A network that says where it meets the provider network in OVN's terms is OVN's
        (not ``trylast`` like the other built-ins' claims: the Linux bridge would take any
        nat network first); others come here through ``--backend ovn``."""
        if network.metadata and OVN_NS in network.metadata:
            return NAME
        return None

    @hookimpl
    def virtnet_network_validate(self, network: Network) -> None:
        if network.metadata and OVN_NS in network.metadata:
            parse_uplink(network)  # bad uplinks are bad input at define time

    @hookimpl
    def virtnet_network_plan_start(self, network: Network) -> Plan:
        config = require_config()
        uplink = parse_uplink(network)
        if network.mode is ForwardMode.BRIDGE and uplink is None:
            raise InvalidInput(
                "a bridge-mode OVN network needs <ovn:uplink physnet=...> (the provider "
                "network its guests join)",
                subject="network/metadata",
            )
        if network.mode is ForwardMode.NAT and (uplink is None or uplink.address is None):
            raise InvalidInput(
                "a nat OVN network needs <ovn:uplink physnet= address= chassis=> (where its "
                "gateway meets the outside)",
                subject="network/metadata",
            )
        if network.bandwidth is not None:
            raise Unsupported(
                "OVN limits each port (its own <bandwidth>, or its portgroup's), not a whole "
                "network's total",
                subject="network/bandwidth",
            )
        if network.dnsmasq_options:
            raise Unsupported("OVN serves DHCP itself: no dnsmasq options", subject="network")
        if any(ip.version == 6 and ip.dhcp and ip.dhcp.ranges for ip in network.ips):
            raise Unsupported("DHCPv6 ranges on OVN: not yet (SLAAC works)", subject="network/ip")
        info: dict[str, Any] = {
            "bridge": config.bridge,
            # where the network meets the outside: its SNAT address, for nat
            "uplink": str(uplink.address.ip) if uplink and uplink.address else None,
            "switch": nb.switch_name(network),
            "router": nb.router_name(network) if nb.has_router(network) else None,
            "owned": False,
        }
        return Plan([StartOvnNetwork(network, config.nb)], info)

    @hookimpl
    def virtnet_port_plan_plug(
        self, network: Network, port: NetworkPort, status: dict[str, Any]
    ) -> Plan:
        return plan_plug(network, port, require_config())

    @hookimpl
    def virtnet_network_check(self, network: Network) -> list[str]:
        from virtnet_ovn.drift import check

        return check(network, require_config())

    @hookimpl
    def virtnet_network_reconcile(
        self, network: Network, host: Host, ports: list[NetworkPort]
    ) -> list[str]:
        from virtnet_ovn.drift import reconcile

        return reconcile(network, ports, require_config(), host.scope)

    @hookimpl
    def virtnet_watchers(self) -> list[Watcher] | None:
        """virtnetd on a chassis reports its ports going up and down (OVN's ``up``)."""
        from virtnet_ovn.watch import port_watcher

        config = OvnConfig.from_env()
        return [port_watcher(config)] if config is not None else None

    @hookimpl
    def virtnet_undo_actions(self) -> dict[str, UndoAction]:
        return dict(UNDO_ACTIONS)


def plan_plug(net: Network, port: NetworkPort, config: OvnConfig) -> Plan:
    assert port.uuid is not None and port.mac is not None
    try:
        chassis = chassis_name(config)
    except VirtnetError as exc:
        raise Unsupported(f"cannot plug here: {exc}", subject="port") from None
    stopped = controller_problem(config.rundir, ask=False)  # a binding would never come
    if stopped:
        raise OperationFailed(f"cannot plug here: {stopped}", subject="port")
    a = port.attachment
    port.plug = Plug(type="bridge", bridge=config.bridge)
    a.ifname = a.ifname or port_ifname(port.uuid)
    steps: list[Step] = [
        CreateLogicalPort(net, port.uuid, port.mac, a.addresses, a.spoof_check is not False,
                          bool(port.isolated), config, chassis, port.bandwidth),
    ]  # fmt: skip
    if a.kind in (AttachmentKind.TAP, AttachmentKind.NONE):
        a.kind = AttachmentKind.TAP
        steps.append(CreateTap(a.ifname, None, host_side_mac(port.mac), a.owner_uid, net.mtu))
    elif a.kind is AttachmentKind.VETH:
        if not a.netns:
            raise InvalidInput("a veth port needs the guest's namespace", subject="port/netns")
        a.guest_ifname = a.guest_ifname or "eth0"
        steps.append(CreateVeth(a.ifname, None, a.guest_ifname, a.netns, port.mac, net.mtu,
                                peer_tx_checksum=False))  # fmt: skip
    else:
        raise Unsupported(f"the ovn backend cannot make {a.kind.value} ports", subject="port")
    steps.append(OutOfHostStack(a.ifname))
    external_ids = {"iface-id": port.uuid, "attached-mac": port.mac, "iface-status": "active",
                    "virtnet-port": port.uuid}  # fmt: skip
    if port.owner is not None:
        external_ids["vm-uuid"] = port.owner.uuid
    steps += [
        AddOvsPort(config.bridge, a.ifname, external_ids=tuple(sorted(external_ids.items()))),
        AwaitOvsInterface(a.ifname),
        SetUp(a.ifname),
        AwaitPortBound(a.ifname, config.ovsdb, config.rundir),
    ]
    return Plan(steps, {"ifname": a.ifname, "chassis": chassis})


__all__ = ["NAME", "NB_ENV", "OvnBackend", "plan_plug"]
