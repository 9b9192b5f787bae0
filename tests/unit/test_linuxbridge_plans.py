"""The Linux bridge backend's plans, without a kernel: what each mode and port kind asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtnet.backend import Host
from virtnet.errors import InvalidInput, Unsupported
from virtnet.model import parse_network
from virtnet.model.network import Bandwidth, Network, Rate
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.services import steps as s
from virtnet_linuxbridge.network import plan_start
from virtnet_linuxbridge.port import plan_plug

HOST = Host(Path("/nonexistent/state"), Path("/nonexistent/run"))
UUID = "5f1a9e3c-0d4b-4f57-9a43-6b3f6e1b2c11"


def net(forward: str, extra: str = "") -> Network:
    return parse_network(
        f"<network><name>n</name><uuid>{UUID}</uuid>{forward}<bridge name='vb0' stp='off'/>"
        f"<mac address='52:54:00:01:02:03'/>{extra}</network>"
    )


def kinds(plan: object) -> list[type]:
    return [type(step) for step in plan]  # type: ignore[attr-defined]


def test_nat_plan_builds_bridge_then_services() -> None:
    plan = plan_start(
        net(
            "<forward mode='nat'/>",
            "<ip address='10.1.0.1' prefix='24'><dhcp>"
            "<range start='10.1.0.5' end='10.1.0.9'/></dhcp></ip>",
        ),
        HOST,
    )
    # dnsmasq before the firewall: it starts up while the rules go in (ctx.completions)
    assert kinds(plan) == [
        s.CreateBridge, s.RemovePortsInBulk, s.RequireSubnetsFree, s.ReleaseSharedTables,
        s.AddAddress, s.SetUp, s.EnableForwarding, s.StartDnsmasq, s.AddNetworkFirewall,
    ]  # fmt: skip
    bridge = plan.steps[0]
    assert isinstance(bridge, s.CreateBridge)
    assert (bridge.name, bridge.mac, bridge.stp, bridge.delay) == (
        "vb0",
        "52:54:00:01:02:03",
        False,
        0,
    )
    assert plan.info["bridge"] == "vb0" and plan.info["owned"] is True
    assert plan.info["dnsmasq"]["directory"] == f"/nonexistent/run/dnsmasq/{UUID}"


def test_open_mode_has_no_rules_and_isolated_no_forwarding() -> None:
    open_plan = plan_start(
        net("<forward mode='open'/>", "<ip address='10.1.0.1' prefix='24'/>"), HOST
    )
    firewall = [st for st in open_plan if isinstance(st, s.AddNetworkFirewall)]
    assert firewall and firewall[0].rules is None
    isolated = plan_start(net("", "<ip address='10.1.0.1' prefix='24'/>"), HOST)
    assert s.EnableForwarding not in kinds(isolated)


def test_bridge_mode_only_checks_the_host_bridge() -> None:
    lan = parse_network(
        "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>"
    )
    plan = plan_start(lan, HOST)
    assert kinds(plan) == [s.RequireBridge] and plan.info == {"bridge": "br0", "owned": False}


def test_static_routes_and_network_bandwidth() -> None:
    plan = plan_start(
        net(
            "<forward mode='route'/>",
            "<bandwidth><inbound average='100'/></bandwidth>"
            "<ip address='10.1.0.1' prefix='24'/>"
            "<route address='10.9.0.0' prefix='16' gateway='10.1.0.254' metric='5'/>",
        ),
        HOST,
    )
    routes = [st for st in plan if isinstance(st, s.AddRoute)]
    assert routes == [s.AddRoute("10.9.0.0/16", "10.1.0.254", 5)]
    assert isinstance(plan.steps[-1], s.ShapeLink) and plan.steps[-1].ifname == "vb0"


def port(kind: AttachmentKind, **kw: object) -> NetworkPort:
    return NetworkPort(
        network="n",
        uuid="0c1e9a52-1f7e-4c8e-a0a1-6f7d2b1c3d4e",
        mac="52:54:00:aa:bb:cc",
        attachment=Attachment(kind=kind, **kw),
    )


STATUS = {"bridge": "vb0", "owned": True}


def test_tap_port_is_guarded_and_up_last() -> None:
    p = port(AttachmentKind.TAP, owner_uid=1000)
    plan = plan_plug(net("<forward mode='nat'/>"), p, STATUS)
    assert kinds(plan) == [s.CreateTap, s.GuardPort, s.PinGuestMac, s.GuardHostSide, s.SetUp]
    tap = plan.steps[0]
    assert isinstance(tap, s.CreateTap)
    assert tap.ifname == "vnet0c1e9a521f7" and tap.mac == "fe:54:00:aa:bb:cc" and tap.bulk
    assert p.plug is not None and (p.plug.type, p.plug.bridge) == ("network", "vb0")


def test_veth_port_with_isolation_bandwidth_and_no_spoof_check() -> None:
    p = port(AttachmentKind.VETH, netns="guest", spoof_check=False)
    p.isolated = True
    p.bandwidth = Bandwidth(outbound=Rate(average=10))
    plan = plan_plug(net("<forward mode='nat'/>"), p, STATUS)
    assert kinds(plan) == [s.CreateVeth, s.SetPortIsolated, s.GuardHostSide, s.ShapeLink, s.SetUp]
    host_guard = next(x for x in plan.steps if isinstance(x, s.GuardHostSide))
    assert host_guard.isolated and not host_guard.guarded  # no DHCP check without the guard
    assert p.attachment.guest_ifname == "eth0"


def test_ports_on_a_host_bridge_are_not_guarded_or_bulk_deleted() -> None:
    p = port(AttachmentKind.TAP)
    plan = plan_plug(net("<forward mode='bridge'/>"), p, {"bridge": "br0", "owned": False})
    assert kinds(plan) == [s.CreateTap, s.SetUp]
    assert isinstance(plan.steps[0], s.CreateTap) and not plan.steps[0].bulk
    assert p.plug is not None and p.plug.type == "bridge"


def test_bad_port_requests_are_refused() -> None:
    with pytest.raises(InvalidInput, match="namespace"):
        plan_plug(net("<forward mode='nat'/>"), port(AttachmentKind.VETH), STATUS)
    with pytest.raises(Unsupported, match="macvtap"):
        plan_plug(net("<forward mode='nat'/>"), port(AttachmentKind.MACVTAP), STATUS)
    floor = port(AttachmentKind.TAP)
    floor.bandwidth = Bandwidth(inbound=Rate(average=10, floor=5))
    with pytest.raises(Unsupported, match="floor"):
        plan_plug(net("<forward mode='nat'/>"), floor, STATUS)
