"""The Linux bridge backend's forward modes, each checked with real traffic between namespaces."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import time

import pytest

from virtnet.testing import Namespace, can_ping, can_tcp, dhcp_lease, resolve
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


def _seen_from(outside: Namespace, source: str) -> int:
    """Packets from ``source`` that reached the outside namespace (its own counter)."""
    listed = outside.exec("nft", "list", "chain", "inet", "seen", "input").stdout
    found = re.search(rf"ip saddr {re.escape(source)} counter packets (\d+)", listed)
    return int(found[1]) if found else 0


@pytest.mark.parametrize("mode", ["route", "nat"])
def test_a_guest_without_spoof_checks_forwards_only_its_networks_sources(
    world: World, mode: str
) -> None:
    """The network's own check (not the port's): a source the kernel does not route back to
    the guest's bridge (another network's subnet, anyone's) is not forwarded, whatever the
    port allows."""
    world.vn.create_network(network_xml("own", mode, "vtbr-own", "10.77.6"))
    world.vn.create_network(network_xml("other", "route", "vtbr-oth", "10.77.7"))
    guest, _ = world.plug("own", "g", spoof_check=False)
    address = dhcp_lease(guest)
    assert address
    sources = [address, "10.77.7.66", "198.51.100.7"]  # its own, the other network's, anyone's
    world.outside.exec("nft", "add", "table", "inet", "seen")
    world.outside.exec("nft", "add", "chain", "inet", "seen", "input",
                       "{ type filter hook input priority 0 ; }")  # fmt: skip
    for source in sources[1:]:
        guest.ip("addr", "add", f"{source}/32", "dev", "eth0")
    seen = {}
    for source in sources:
        # what the outside sees: NAT shows the guest's own address as the host's
        shown = UPLINK_HOST if mode == "nat" and source == address else source
        world.outside.exec("nft", "add", "rule", "inet", "seen", "input", "ip", "saddr", shown,
                           "counter")  # fmt: skip
        guest.exec("ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", source, UPLINK_PEER,
                   check=False)  # fmt: skip
        seen[source] = _seen_from(world.outside, shown)
    assert seen[address] > 0  # the measure works: its own address goes out (NAT: as the host)
    assert seen["10.77.7.66"] == 0 and seen["198.51.100.7"] == 0, seen


RECEIVE_ONE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
s.settimeout(10)
print("ready", flush=True)
print("%s:%d" % s.recvfrom(100)[1], flush=True)
"""
SEND_FROM_PORT_600 = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 600))
s.sendto(b"x", (sys.argv[2], 9999))
"""


def test_no_masquerade_within_a_nat_network(world: World) -> None:
    """Guests talk to each other as themselves (bridged: with br_netfilter on, as here, the
    frame passes the NAT hook too), and a packet from the host's own address on the network
    keeps its source port, as a DHCP reply from port 67 must (a masquerade remaps it above
    1023)."""
    world.vn.create_network(network_xml("natself", "nat", "vtbr-self", "10.77.8"))
    guest, _ = world.plug("natself", "g")
    other, _ = world.plug("natself", "o")
    address, other_address = dhcp_lease(guest), dhcp_lease(other)
    assert address and other_address
    assert can_tcp(guest, other, other_address) == address
    receiver = guest.popen(sys.executable, "-c", RECEIVE_ONE, stdout=subprocess.PIPE)
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"  # bound: no datagram is lost
        world.host.exec(sys.executable, "-c", SEND_FROM_PORT_600, "10.77.8.1", address)
        out, _ = receiver.communicate(timeout=15)
    finally:
        receiver.kill()
        receiver.wait()
    assert out.strip() == "10.77.8.1:600"


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


def wait_for_global_v6(guest: Namespace, prefix: str, seconds: float = 15) -> str | None:
    """The guest's SLAAC address in ``prefix`` once router advertisements configured it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = guest.ip("-6", "-o", "addr", "show", "dev", "eth0", "scope", "global").stdout
        found = re.search(rf"inet6 ({re.escape(prefix)}[0-9a-f:]+)/64", out)
        if found and "tentative" not in out:
            return found.group(1)
        time.sleep(0.3)
    return None


def test_ipv6_router_advertisements_configure_guests(world: World) -> None:
    # no IPv6 <range>: dnsmasq advertises the prefix for SLAAC (with one, guests use DHCPv6)
    extra = "<ip family='ipv6' address='fd00:77:6::1' prefix='64'/>"
    world.vn.create_network(network_xml("six", "nat", "vtbr-six", "10.77.6", extra))
    guest, port = world.plug("six", "g")
    address = wait_for_global_v6(guest, "fd00:77:6:")
    assert address is not None
    # the EUI-64 address the guest formed is one anti-spoofing allows from the start
    mac = bytes.fromhex((port.mac or "").replace(":", ""))
    eui64 = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    assert ipaddress.ip_address(address).packed[8:] == eui64
    assert (
        guest.exec("ping", "-6", "-c", "1", "-W", "2", "fd00:77:6::1", check=False).returncode == 0
    )
    assert "default via fe80:" in guest.ip("-6", "route").stdout  # the host is its router


def test_an_isolated_network_advertises_its_prefix_but_never_a_default_route(
    world: World,
) -> None:
    # libvirt's ra-param=*,0,0: router lifetime 0, so the guest forms its address on the
    # network's prefix but takes no default route through the host
    extra = "<ip family='ipv6' address='fd00:77:7::1' prefix='64'/>"
    world.vn.create_network(network_xml("iso6", "", "vtbr-iso6", "10.77.7", extra))
    guest, _ = world.plug("iso6", "g")
    assert wait_for_global_v6(guest, "fd00:77:7:") is not None
    assert (
        guest.exec("ping", "-6", "-c", "1", "-W", "2", "fd00:77:7::1", check=False).returncode == 0
    )
    routes = guest.ip("-6", "route").stdout
    assert "fd00:77:7::/64" in routes and "default" not in routes
