"""Guest ports on the Linux bridge backend: taps, isolation, anti-spoofing, bandwidth."""

from __future__ import annotations

import json

import pytest

from virtnet.errors import Conflict
from virtnet.model.network import Bandwidth, Rate
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing import can_ping, dhcp_lease, tcp_throughput
from virtnet.testing.fixtures import needs_root
from virtnet.testing.world import World

pytestmark = [needs_root, pytest.mark.root]

NAT = """<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}' stp='off'/>
  <ip address='{subnet}.1' prefix='24'><dhcp><range start='{subnet}.100' end='{subnet}.150'/>
  <host mac='52:54:00:00:bb:01' ip='{subnet}.20'/></dhcp></ip>{extra}</network>"""


def start(world: World, name: str, bridge: str, subnet: str, extra: str = "") -> None:
    world.vn.create_network(NAT.format(name=name, bridge=bridge, subnet=subnet, extra=extra))


def test_tap_port_is_persistent_owned_and_enslaved(world: World) -> None:
    start(world, "taps", "vtbr-tap", "10.78.1")
    port = world.vn.create_port(
        "taps",
        NetworkPort(
            network="taps",
            attachment=Attachment(kind=AttachmentKind.TAP, ifname="vttap0", owner_uid=4242),
        ),
    )
    info = json.loads(world.host.ip("-d", "-j", "link", "show", "vttap0").stdout)[0]
    assert info["linkinfo"]["info_kind"] == "tun"
    assert info["linkinfo"]["info_data"]["type"] == "tap"
    assert str(info["linkinfo"]["info_data"]["user"]) == "4242"
    assert info["master"] == "vtbr-tap"
    assert info["address"] == "fe" + (port.mac or "")[2:]  # never the guest's own MAC
    assert port.attachment.ifname == "vttap0" and port.plug and port.plug.bridge == "vtbr-tap"
    with pytest.raises(Conflict, match="vttap0"):
        world.vn.create_port(
            "taps",
            NetworkPort(network="taps", attachment=Attachment(AttachmentKind.TAP, "vttap0")),
        )
    world.vn.delete_port(port.uuid or "")
    assert "vttap0" not in world.host.links()


def test_isolated_ports_reach_gateway_and_open_ports_not_each_other(world: World) -> None:
    start(world, "isol", "vtbr-isol", "10.78.2")
    a, _ = world.plug("isol", "a", isolated=True)
    b, _ = world.plug("isol", "b", isolated=True)
    c, _ = world.plug("isol", "c")
    addr_a, addr_b, addr_c = dhcp_lease(a), dhcp_lease(b), dhcp_lease(c)
    assert addr_a and addr_b and addr_c
    assert can_ping(a, "10.78.2.1") and can_ping(b, "10.78.2.1")
    assert can_ping(a, addr_c) and can_ping(b, addr_c)
    assert not can_ping(a, addr_b)
    assert not can_ping(b, addr_a)


@pytest.mark.parametrize(
    ("extra", "group"),
    [
        ("<port isolated='yes'/>", None),
        ("<portgroup name='pool'><port isolated='yes'/></portgroup>", "pool"),
    ],
)
def test_network_or_portgroup_wide_port_isolation(
    world: World, extra: str, group: str | None
) -> None:
    start(world, "isonet", "vtbr-isonet", "10.78.3", extra)
    a, port = world.plug("isonet", "a", portgroup=group)
    b, _ = world.plug("isonet", "b", portgroup=group)
    assert port.isolated is True
    addr_a, addr_b = dhcp_lease(a), dhcp_lease(b)
    assert addr_a and addr_b and can_ping(a, "10.78.3.1")
    assert not can_ping(a, addr_b)


@pytest.mark.slow
def test_network_bandwidth_shapes_the_whole_bridge(world: World) -> None:
    start(
        world,
        "netbw",
        "vtbr-netbw",
        "10.78.7",
        "<bandwidth><inbound average='400' peak='400' burst='32'/></bandwidth>",
    )
    guest, _ = world.plug("netbw", "g")
    address = dhcp_lease(guest)
    assert address
    measured = tcp_throughput(world.host, guest, address, seconds=3)
    print(f"network inbound: {measured:.0f} B/s for a 400 kB/s limit")
    assert 400_000 * 0.85 <= measured <= 400_000 * 1.15, measured


def test_spoofed_mac_or_ip_gets_nothing_through(world: World) -> None:
    start(world, "guard", "vtbr-guard", "10.78.4")
    honest, _ = world.plug("guard", "honest")
    liar, _ = world.plug("guard", "liar")
    fixed, _ = world.plug("guard", "fixed", mac="52:54:00:00:bb:01")
    assert dhcp_lease(honest) and dhcp_lease(fixed) == "10.78.4.20"
    lease = dhcp_lease(liar)
    assert lease and can_ping(liar, "10.78.4.1")
    # a second, unleased source address
    liar.ip("addr", "add", "10.78.4.200/24", "dev", "eth0")
    spoofed = liar.exec("ping", "-c", "2", "-W", "1", "-I", "10.78.4.200", "10.78.4.1", check=False)
    assert spoofed.returncode != 0
    liar.ip("addr", "del", "10.78.4.200/24", "dev", "eth0")
    assert can_ping(liar, "10.78.4.1")
    # someone else's MAC
    liar.ip("link", "set", "eth0", "address", "52:54:00:de:ad:01")
    liar.ip("neigh", "flush", "all")
    assert not can_ping(liar, "10.78.4.1", wait=0.5)


def test_spoof_check_can_be_turned_off(world: World) -> None:
    start(world, "trust", "vtbr-trust", "10.78.5")
    guest, port = world.plug("trust", "g", spoof_check=False)
    guest.ip("addr", "add", "10.78.5.222/24", "dev", "eth0")
    assert can_ping(guest, "10.78.5.1")
    guarded = world.host.exec("nft", "list", "set", "bridge", "virtnet", "guarded").stdout
    assert port.attachment.ifname and port.attachment.ifname not in guarded


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_bandwidth_limit_holds_within_15_percent(world: World, direction: str) -> None:
    start(world, "shaped", "vtbr-bw", "10.78.6")
    rate = Rate(average=500, peak=500, burst=32)  # 500 kB/s
    bandwidth = Bandwidth(inbound=rate) if direction == "inbound" else Bandwidth(outbound=rate)
    guest, _ = world.plug("shaped", "g", bandwidth=bandwidth)
    address = dhcp_lease(guest)
    assert address
    if direction == "inbound":  # towards the guest
        measured = tcp_throughput(world.host, guest, address, seconds=3)
    else:
        measured = tcp_throughput(guest, world.host, "10.78.6.1", seconds=3)
    print(f"{direction}: {measured:.0f} B/s for a 500 kB/s limit")
    assert 500_000 * 0.85 <= measured <= 500_000 * 1.15, measured
