"""The hook implementations: describe, claim, plan a network, plan a port, check drift."""

from __future__ import annotations

from typing import Any

from virtnet.backend import (
    FEATURE_ANTI_SPOOFING,
    FEATURE_BANDWIDTH,
    FEATURE_PORT_ISOLATION,
    FEATURE_VLAN,
    BackendInfo,
    Host,
    Readiness,
)
from virtnet.errors import InvalidInput, Unsupported
from virtnet.hookspecs import hookimpl
from virtnet.model.network import ForwardMode, Network, Vlan
from virtnet.model.port import AttachmentKind, NetworkPort, Plug
from virtnet.ownership import OVS_OWNER_KEY, Owner
from virtnet.plan import Plan, Step
from virtnet.services import Services
from virtnet.services.openflow import mgmt_target
from virtnet.services.ovsdb import db_remote, kernel_datapath_available
from virtnet.services.recipes import (
    bandwidth_steps,
    guards,
    host_guard_steps,
    host_side_mac,
    ifb_name,
    known_ips,
    l3_steps,
    port_ifname,
)
from virtnet.services.steps import (
    AddOvsPort,
    AwaitOvsInterface,
    CreateOvsBridge,
    CreateTap,
    CreateVeth,
    GuardOvsPort,
    OutOfHostStack,
    RemovePortsInBulk,
    RequireOvsBridge,
    SetUp,
)

NAME = "ovs"
MODES = frozenset(
    {ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.OPEN, ForwardMode.ISOLATED,
     ForwardMode.BRIDGE}
)  # fmt: skip


class OvsBackend:
    @hookimpl
    def virtnet_backend_describe(self, host: Host) -> BackendInfo:
        return BackendInfo(
            name=NAME,
            version="0.1.0",
            summary="Open vSwitch bridges through OVSDB; VLAN access ports and trunks",
            forward_modes=MODES,
            attachments=frozenset({AttachmentKind.TAP, AttachmentKind.VETH}),
            features=frozenset(
                {FEATURE_VLAN, FEATURE_BANDWIDTH, FEATURE_PORT_ISOLATION, FEATURE_ANTI_SPOOFING}
            ),
            readiness=_probe(),
        )

    @hookimpl(trylast=True)
    def virtnet_network_claim(self, network: Network) -> str | None:
        vp = network.virtualport
        if network.mode is ForwardMode.BRIDGE and vp is not None and vp.type == "openvswitch":
            return NAME
        return None  # managed networks come here through the backend override

    @hookimpl
    def virtnet_network_plan_start(self, network: Network, host: Host) -> Plan:
        bridge = network.bridge.name if network.bridge else None
        if not bridge:
            raise InvalidInput("needs a bridge name", subject="network/bridge/@name")
        if network.mode is ForwardMode.BRIDGE:
            datapath = "system" if kernel_datapath_available() else "netdev"
            return Plan(
                [RequireOvsBridge(bridge)], {"bridge": bridge, "owned": False, "datapath": datapath}
            )
        assert network.uuid is not None
        datapath = "system" if kernel_datapath_available() else "netdev"
        plan = Plan(
            [
                CreateOvsBridge(bridge, datapath, network.uuid, network.mtu, network.mac),
                # on stop, the port links go in one kernel request before the bridge goes
                RemovePortsInBulk(bridge, include_bridge=False),
            ]
        )
        steps, info = l3_steps(network, bridge, host, openflow_target=mgmt_target(bridge))
        plan.add(*steps)
        plan.add(*bandwidth_steps(bridge, ifb_name(network.uuid), network.bandwidth, "network"))
        plan.info.update(info, bridge=bridge, owned=True, datapath=datapath)
        return plan

    @hookimpl
    def virtnet_port_plan_plug(
        self, network: Network, port: NetworkPort, host: Host, status: dict[str, Any]
    ) -> Plan:
        return plan_plug(network, port, status)

    @hookimpl
    def virtnet_network_reconcile(
        self, network: Network, host: Host, status: dict[str, Any], ports: list[NetworkPort]
    ) -> list[str]:
        return Services.once(host, reconcile, network, status, ports, host.scope)

    @hookimpl
    def virtnet_network_check(self, host: Host, status: dict[str, Any]) -> list[str]:
        return Services.once(host, _check, str(status["bridge"]))


def plan_plug(net: Network, port: NetworkPort, status: dict[str, Any]) -> Plan:
    assert port.uuid is not None and port.mac is not None
    bridge = str(status["bridge"])
    a = port.attachment
    port.plug = Plug(type="network" if status.get("owned") else "bridge", bridge=bridge)
    a.ifname = a.ifname or port_ifname(port.uuid)
    steps: list[Step]
    group_of = bridge if status.get("owned") else None  # see RemovePortsInBulk in plan_start
    if a.kind in (AttachmentKind.TAP, AttachmentKind.NONE):
        a.kind = AttachmentKind.TAP
        steps = [
            CreateTap(a.ifname, None, host_side_mac(port.mac), a.owner_uid, net.mtu,
                      group_of=group_of)
        ]  # fmt: skip
    elif a.kind is AttachmentKind.VETH:
        if not a.netns:
            raise InvalidInput("a veth port needs the guest's namespace", subject="port/netns")
        a.guest_ifname = a.guest_ifname or "eth0"
        userspace = status.get("datapath", "netdev") == "netdev"
        steps = [
            CreateVeth(a.ifname, None, a.guest_ifname, a.netns, port.mac, net.mtu,
                       peer_tx_checksum=not userspace, group_of=group_of)
        ]  # fmt: skip
    else:
        raise Unsupported(f"the ovs backend cannot make {a.kind.value} ports", subject="port")
    if status.get("datapath", "netdev") == "netdev":
        steps.append(OutOfHostStack(a.ifname))
    tag, trunks, mode = vlan_settings(port.vlan)
    steps.append(
        AddOvsPort(bridge, a.ifname, tag, trunks, mode, external_ids(port), bool(port.isolated))
    )
    if guards(net, port):
        steps.append(GuardOvsPort(bridge, a.ifname, port.mac, tuple(known_ips(net, port, status))))
    steps += host_guard_steps(net, port)
    steps += bandwidth_steps(a.ifname, ifb_name(port.uuid), port.bandwidth, "port")
    steps += [AwaitOvsInterface(a.ifname), SetUp(a.ifname)]
    return Plan(steps, {"ifname": a.ifname})


def vlan_settings(vlan: Vlan | None) -> tuple[int | None, tuple[int, ...], str | None]:
    """libvirt's ``<vlan>`` as OVS port columns: (tag, trunks, vlan_mode)."""
    if vlan is None or not vlan.tags:
        return None, (), None
    if not vlan.trunk and len(vlan.tags) == 1:
        return vlan.tags[0].id, (), None  # an access port
    native = next((t for t in vlan.tags if t.native_mode), None)
    trunks = tuple(t.id for t in vlan.tags)
    if native is None:
        return None, trunks, "trunk"
    mode = "native-untagged" if native.native_mode == "untagged" else "native-tagged"
    return native.id, trunks, mode


def external_ids(port: NetworkPort) -> tuple[tuple[str, str], ...]:
    """What OVN, Neutron's agents and nova look for on an interface."""
    params = port.virtualport.parameters if port.virtualport is not None else {}
    ids = {
        "iface-id": params.get("interfaceid") or str(port.uuid),
        "attached-mac": str(port.mac),
        "iface-status": "active",
        "virtnet-port": str(port.uuid),  # what reconcile may touch
    }
    if port.owner is not None:
        ids["vm-uuid"] = port.owner.uuid
    if params.get("profileid"):
        ids["virtnet-profileid"] = params["profileid"]
    return tuple(sorted(ids.items()))


def reconcile(
    services: Services,
    net: Network,
    status: dict[str, Any],
    ports: list[NetworkPort],
    scope: str | None = None,
) -> list[str]:
    """OVS ports of virtnet's whose guest link is gone are removed; guest links whose OVS
    port is gone (a lost or rebuilt database, a crash between steps) are added back, with
    their anti-spoofing rules re-made for the new OpenFlow port number."""
    from virtnet.services import openflow

    bridge = str(status["bridge"])
    db, nl = services.ovsdb, services.netlink
    repairs = []
    for row in list(db.table("Port").values()):
        ours = any("virtnet-port" in iface.external_ids for iface in row.interfaces)
        if ours and nl.index(row.name) is None:
            db.delete_port(bridge, row.name, Owner(str(net.uuid), scope=scope).label)
            repairs.append(f"removed OVS port {row.name}: its guest link is gone")
    present = set(db.port_names(bridge))
    for port in ports:
        ifname = port.attachment.ifname
        if ifname and ifname not in present and nl.index(ifname) is not None:
            tag, trunks, mode = vlan_settings(port.vlan)
            db.add_port(
                bridge,
                ifname,
                tag=tag,
                trunks=list(trunks),
                vlan_mode=mode,
                external_ids={
                    **dict(external_ids(port)),
                    OVS_OWNER_KEY: Owner(str(net.uuid), port.uuid, scope).label,
                },
                protected=bool(port.isolated),
            )
            if net.mode.has_own_bridge and port.attachment.spoof_check is not False:
                guard = GuardOvsPort(bridge, ifname, str(port.mac),
                                     tuple(known_ips(net, port, status)))  # fmt: skip
                openflow.remove_guard(bridge, guard.cookie)
                openflow.add_flows(
                    bridge,
                    openflow.guard_flows(guard.cookie, db.ofport(ifname), guard.mac, guard.ips),
                )
            repairs.append(f"re-added {ifname} to {bridge}")
    return repairs


def _check(services: Services, bridge: str) -> list[str]:
    problems = []
    if services.ovsdb.bridge(bridge) is None:
        problems.append(f"Open vSwitch bridge {bridge} is missing from OVSDB")
    if services.netlink.index(bridge) is None:
        problems.append(f"the local port of {bridge} is missing from the kernel")
    problems += services.ovsdb.interface_errors(bridge)
    return problems


def _probe() -> Readiness:
    import importlib.util
    import os

    problems, notes = [], []
    if importlib.util.find_spec("ovs") is None:
        problems.append("the ovs Python library is missing (Debian: python3-openvswitch)")
    remote = db_remote()
    if remote.startswith("unix:") and not os.path.exists(remote[5:]):
        problems.append(
            f"no Open vSwitch database at {remote[5:]} (start openvswitch-switch, or set "
            "VIRTNET_OVSDB)"
        )
    if not kernel_datapath_available():
        notes.append("no openvswitch kernel module: bridges use the userspace datapath (netdev)")
    return Readiness(tuple(problems), tuple(notes))
