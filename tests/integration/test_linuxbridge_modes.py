"""The Linux bridge backend's forward modes, each checked with real traffic between namespaces."""

from __future__ import annotations

import pytest

from virtnet.testing import can_ping, can_tcp, dhcp_lease, resolve
from virtnet.testing.fixtures import needs_root
from virtnet.testing.world import UPLINK_HOST, UPLINK_PEER, World

pytestmark = [needs_root, pytest.mark.root]


def network_xml(name: str, mode: str | None, bridge: str, subnet: str, extra: str = "") -> str:
    forward = f"<forward mode='{mode}'/>" if mode else ""
    return f"""<network>
  <name>{name}</name>{forward}
  <bridge name='{bridge}' stp='off'/>
  <domain name='lab.test'/>
  <dns><host ip='{subnet}.50'><hostname>db</hostname></host></dns>
  <ip address='{subnet}.1' prefix='24'>
    <dhcp>
      <range start='{subnet}.100' end='{subnet}.150'/>
      <host mac='52:54:00:00:aa:01' name='fixed' ip='{subnet}.10'/>
    </dhcp>
  </ip>{extra}
</network>"""


def test_nat_guest_gets_lease_dns_and_reaches_outside_masqueraded(world: World) -> None:
    world.vn.define_network(network_xml("natnet", "nat", "vtbr-nat", "10.77.1"))
    world.vn.start_network("natnet")
    fixed, _ = world.plug("natnet", "fixed", mac="52:54:00:00:aa:01")
    dynamic, port = world.plug("natnet", "dyn")

    assert dhcp_lease(fixed, hostname="fixed") == "10.77.1.10"  # the reservation
    address = dhcp_lease(dynamic, hostname="dyn")
    assert address is not None and address.startswith("10.77.1.")
    assert 100 <= int(address.rsplit(".", 1)[1]) <= 150
    assert resolve(dynamic, "db.lab.test", "10.77.1.1") == ["10.77.1.50"]
    assert resolve(dynamic, "fixed.lab.test", "10.77.1.1") == ["10.77.1.10"]

    assert can_ping(dynamic, UPLINK_PEER)
    assert can_tcp(dynamic, world.outside, UPLINK_PEER) == UPLINK_HOST  # masqueraded
    world.outside.ip("route", "add", "10.77.1.0/24", "via", UPLINK_HOST)
    assert can_tcp(world.outside, dynamic, address, timeout=1) is None  # no way in

    leases = {lease.mac: lease for lease in world.vn.dhcp_leases("natnet")}
    assert leases["52:54:00:00:aa:01"].ip == "10.77.1.10"
    assert leases[port.mac].ip == address and leases[port.mac].hostname == "dyn"


def test_route_outside_reaches_guest_own_address(world: World) -> None:
    world.vn.create_network(network_xml("routed", "route", "vtbr-rt", "10.77.2"))
    guest, _ = world.plug("routed", "g")
    address = dhcp_lease(guest)
    assert address
    world.outside.ip("route", "add", "10.77.2.0/24", "via", UPLINK_HOST)
    assert can_tcp(world.outside, guest, address) == UPLINK_PEER  # in, unchanged
    assert can_tcp(guest, world.outside, UPLINK_PEER) == address  # out, no NAT


def test_isolated_reaches_bridge_and_guests_only(world: World) -> None:
    world.vn.create_network(network_xml("iso", None, "vtbr-iso", "10.77.3"))
    a, _ = world.plug("iso", "a")
    b, _ = world.plug("iso", "b")
    addr_a, addr_b = dhcp_lease(a), dhcp_lease(b)
    assert addr_a and addr_b
    assert can_ping(a, "10.77.3.1")
    assert can_ping(a, addr_b)
    a.ip("route", "replace", "default", "via", "10.77.3.1")
    assert not can_ping(a, UPLINK_PEER)
    world.outside.ip("route", "add", "10.77.3.0/24", "via", UPLINK_HOST)
    assert not can_ping(world.outside, addr_a)


def test_open_mode_adds_no_rules(world: World) -> None:
    world.vn.create_network(network_xml("opennet", "open", "vtbr-open", "10.77.4"))
    ruleset = world.host.exec("nft", "list", "ruleset").stdout
    assert "vtbr-open" not in ruleset and "10.77.4" not in ruleset
    guest, _ = world.plug("opennet", "g")
    assert dhcp_lease(guest)
    assert can_ping(guest, "10.77.4.1")


def test_bridge_mode_joins_existing_bridge_and_leaves_it(world: World) -> None:
    host = world.host
    host.ip("link", "add", "br0", "type", "bridge")
    host.ip("link", "set", "br0", "up")
    peer = world.guest("peer")
    world.lab.cable(host, "vtpeer", peer, "eth0")
    host.ip("link", "set", "vtpeer", "master", "br0")
    world.lab.address(peer, "eth0", "192.0.2.2/24")
    world.vn.create_network(
        "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>"
    )
    guest, port = world.plug("lan", "g")
    assert port.plug is not None and port.plug.type == "bridge" and port.plug.bridge == "br0"
    world.lab.address(guest, "eth0", "192.0.2.3/24")
    assert can_ping(guest, "192.0.2.2")
    assert "br0" not in host.exec("nft", "list", "ruleset").stdout
    world.vn.destroy_network("lan")
    assert "br0" in host.links() and "vtpeer" in host.links()
    assert host.ip("-o", "link", "show", "master", "br0").stdout.count("\n") == 1


def test_static_route_and_bridge_attributes(world: World) -> None:
    extra = "<route address='198.51.100.0' prefix='24' gateway='10.77.5.254'/>"
    xml = network_xml("attrs", "route", "vtbr-attr", "10.77.5", extra).replace(
        "<bridge name='vtbr-attr' stp='off'/>",
        "<bridge name='vtbr-attr' stp='on' delay='3'/><mac address='52:54:00:12:34:56'/>"
        "<mtu size='1400'/>",
    )
    world.vn.create_network(xml)
    detail = world.host.ip("-d", "-j", "link", "show", "vtbr-attr").stdout
    assert '"mtu":1400' in detail and "52:54:00:12:34:56" in detail
    assert '"stp_state":1' in detail and '"forward_delay":300' in detail
    routes = world.host.ip("route", "show", "198.51.100.0/24").stdout
    assert "via 10.77.5.254 dev vtbr-attr" in routes
