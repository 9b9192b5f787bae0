"""A hostile guest with raw sockets against the anti-spoofing guard, on every backend that
claims it (Linux bridge with nftables, Open vSwitch with OpenFlow).

Each test first shows the attack is really made (a rogue server answers, frames leave the
attacker), then that the victim, the host and the network's DHCP service are unaffected.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtnet.errors import Conflict, InvalidInput, Unsupported
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing import Namespace, can_ping, can_tcp, dhcp_lease, dhcpv6, frames
from virtnet.testing.fixtures import needs_root
from virtnet.testing.ovs import OvsServer
from virtnet.testing.world import UPLINK_HOST, World

pytestmark = [needs_root, pytest.mark.root]

GW_MAC = "52:54:00:0a:0a:01"
NET = f"""<network><name>hostile</name><forward mode='nat'/><bridge name='vtbr-hos' stp='off'/>
  <mac address='{GW_MAC}'/>
  <ip address='10.79.0.1' prefix='24'><dhcp><range start='10.79.0.100' end='10.79.0.110'/>
  <host mac='52:54:00:00:cc:01' ip='10.79.0.20'/></dhcp></ip>
  <ip family='ipv6' address='fd00:79::1' prefix='64'><dhcp>
    <range start='fd00:79::1000' end='fd00:79::1fff'/></dhcp></ip></network>"""
BROADCAST = "ff:ff:ff:ff:ff:ff"


@pytest.fixture(params=["linuxbridge", "ovs"])
def net(request: pytest.FixtureRequest, world: World) -> Iterator[World]:
    """The hostile network on each backend that claims anti-spoofing."""
    server = None
    if request.param == "ovs":
        server = OvsServer(world.host).start()
        mp = pytest.MonkeyPatch()
        mp.setenv("VIRTNET_OVSDB", server.remote)
    try:
        world.vn.create_network(NET, backend=request.param)
        yield world
    finally:
        for row in world.vn.list_networks(inactive=False):
            world.vn.destroy_network(row.name)
        if server is not None:
            server.stop()
            mp.undo()


def guest(world: World, role: str, **port: object) -> tuple[Namespace, NetworkPort, str]:
    ns, made = world.plug("hostile", role, **port)
    assert made.mac is not None
    deadline = time.monotonic() + 5  # its link-local answers once duplicate detection is over
    while "tentative" in ns.ip("-6", "addr", "show", "eth0").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return ns, made, made.mac


def settled_drops(world: World, uuid: str) -> list[dict[str, object]]:
    """A port's drops once they stop changing (OVS adds packets to its counters lazily, up to
    a revalidator cycle later), without the ever-changing "how long ago"."""

    def read() -> list[dict[str, object]]:
        found = world.vn.port_drops(uuid)
        return sorted(({k: v for k, v in d.items() if k != "seconds_ago"} for d in found),
                      key=str)  # fmt: skip

    last, deadline = read(), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = read()
        if now == last:
            return now
        last = now
    return last


def gateway_mac_seen_by(ns: Namespace, address: str) -> str | None:
    out = ns.ip("neigh", "show", address, "dev", "eth0").stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def bridge_of(world: World) -> str:
    return str(world.vn.network_info("hostile")["bridge"])


def test_a_rogue_dhcp_server_never_reaches_other_guests(net: World) -> None:
    attacker, _, attacker_mac = guest(net, "rogue")
    victim, _, _ = guest(net, "victim")
    assert dhcp_lease(attacker)
    # a real DHCP server in the attacker, naming itself the router
    rogue = attacker.popen(
        "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--log-dhcp",
        "--interface=eth0", "--bind-interfaces", "--dhcp-range=10.79.0.200,10.79.0.210",
        "--dhcp-option=3,10.79.0.254", "--dhcp-leasefile=/dev/null", "--no-ping", "-u", "root",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    sniffer = victim.popen("tcpdump", "-l", "-n", "-e", "-i", "eth0", "udp src port 67",
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        for _ in range(3):
            assert (dhcp_lease(victim) or "").startswith("10.79.0.1")
            route = victim.ip("route", "show", "default").stdout
            assert "via 10.79.0.1 " in route, route
        # and a forged OFFER sent straight at the victim
        offer = frames.dhcp_offer("10.79.0.201", "10.79.0.254", "52:54:00:00:00:99", "10.79.0.254")
        ip = frames.ipv4_udp("10.79.0.254", "255.255.255.255", 67, 68, offer)
        frames.send(attacker, "eth0", [frames.ethernet(BROADCAST, attacker_mac, 0x0800, ip)], 5)
        time.sleep(0.5)
    finally:
        rogue.terminate()
        sniffer.terminate()
    seen, log = sniffer.communicate()[0], rogue.communicate()[0]
    assert "DHCPOFFER" in log  # the rogue server did answer
    assert GW_MAC in seen  # the real server's replies arrive
    assert attacker_mac not in seen  # the rogue's never do


def test_a_forged_release_does_not_cut_another_guest_off(net: World) -> None:
    attacker, _, attacker_mac = guest(net, "att")
    reserved, _, reserved_mac = guest(net, "res", mac="52:54:00:00:cc:01")
    dynamic, _, dynamic_mac = guest(net, "dyn")
    assert dhcp_lease(attacker) and dhcp_lease(reserved) == "10.79.0.20"
    dynamic_ip = dhcp_lease(dynamic)
    assert dynamic_ip
    forged = []
    for mac, ip in ((reserved_mac, "10.79.0.20"), (dynamic_mac, dynamic_ip)):
        # in the victim's name (chaddr), and in the attacker's with the victim's client id
        for chaddr, clid in ((mac, None), (attacker_mac, b"\x01" + frames.mac_bytes(mac))):
            release = frames.dhcp_request(chaddr, 7, ciaddr=ip, server="10.79.0.1",
                                          client_id=clid)  # fmt: skip
            for src in ("0.0.0.0", ip):
                udp = frames.ipv4_udp(src, "10.79.0.1", 68, 67, release)
                forged.append(frames.ethernet(GW_MAC, attacker_mac, 0x0800, udp))
    frames.send(attacker, "eth0", forged)
    time.sleep(0.5)
    leases = {lease.mac: lease.ip for lease in net.vn.dhcp_leases("hostile")}
    assert leases.get(reserved_mac) == "10.79.0.20" and leases.get(dynamic_mac) == dynamic_ip
    assert can_ping(reserved, "10.79.0.1") and can_ping(dynamic, "10.79.0.1")
    assert net.vn.check_network("hostile") == []


def test_dhcp_starvation_with_made_up_addresses_takes_no_lease(net: World) -> None:
    attacker, _, attacker_mac = guest(net, "starver")
    assert dhcp_lease(attacker)
    forged = []
    for i in range(40):  # the range holds 11
        fake = f"52:54:00:66:00:{i:02x}"
        for kind, requested in ((1, None), (3, f"10.79.0.{100 + i % 11}")):
            body = frames.dhcp_request(fake, kind, server="10.79.0.1", requested=requested,
                                       xid=i)  # fmt: skip
            udp = frames.ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67, body)
            forged.append(frames.ethernet(BROADCAST, attacker_mac, 0x0800, udp))
    frames.send(attacker, "eth0", forged)
    time.sleep(0.5)
    macs = {lease.mac for lease in net.vn.dhcp_leases("hostile")}
    assert not any(m.startswith("52:54:00:66:00:") for m in macs)
    newcomer, _, _ = guest(net, "newcomer")
    assert dhcp_lease(newcomer)


def _default_route(ns: Namespace) -> str:
    return ns.ip("-6", "route", "show", "default").stdout


def test_router_advertisements_from_a_guest_are_dropped(net: World) -> None:
    attacker, _, attacker_mac = guest(net, "ra")
    victim, _, _ = guest(net, "victim")
    deadline = time.monotonic() + 15  # the network's own RA (dnsmasq answers solicitations)
    while "fe80::" not in _default_route(victim) and time.monotonic() < deadline:
        victim.exec("ip", "link", "set", "eth0", "down")
        victim.exec("ip", "link", "set", "eth0", "up")
        time.sleep(1)
    real = _default_route(victim)
    assert "fe80::" in real
    gateway_ll = real.split()[2]
    attacker_ll = frames.link_local(attacker_mac)
    evil = [
        # a new prefix and default router: the attacker
        frames.ipv6(attacker_ll, "ff02::1", 58, frames.router_advert("fd66::/64", attacker_mac)),
        # the gateway's own link-local saying "I am no router any more"
        frames.ipv6(gateway_ll, "ff02::1", 58, frames.router_advert("fd00:79::/64", GW_MAC, 0)),
    ]
    frames.send(attacker, "eth0", [frames.ethernet("33:33:00:00:00:01", attacker_mac, 0x86DD, f)
                                   for f in evil], 3)  # fmt: skip
    time.sleep(1)
    assert "fd66:" not in victim.ip("-6", "addr", "show", "eth0").stdout
    assert _default_route(victim).split()[:3] == real.split()[:3]


def test_neighbour_advertisements_cannot_poison_caches(net: World) -> None:
    attacker, _, attacker_mac = guest(net, "poison")
    victim, _, victim_mac = guest(net, "victim")
    victim_ll = frames.link_local(victim_mac)
    bridge = bridge_of(net)
    # the host and the victim learn each other
    assert net.host.exec("ping", "-6", "-c", "1", "-W", "2", f"{victim_ll}%{bridge}",
                         check=False).returncode == 0  # fmt: skip
    attacker_ll = frames.link_local(attacker_mac)
    na = [
        # "the victim's link-local is at my MAC", from my own and from the victim's source
        frames.ipv6(attacker_ll, "ff02::1", 58, frames.neighbour_advert(victim_ll, attacker_mac)),
        frames.ipv6(victim_ll, "ff02::1", 58, frames.neighbour_advert(victim_ll, attacker_mac)),
        # "the gateway is at my MAC", told to the victim
        frames.ipv6(
            attacker_ll, victim_ll, 58, frames.neighbour_advert("fd00:79::1", attacker_mac)
        ),
        # my own address, but someone else's MAC in the option
        frames.ipv6(attacker_ll, "ff02::1", 58, frames.neighbour_advert(attacker_ll, victim_mac)),
    ]
    frames.send(attacker, "eth0", [frames.ethernet("33:33:00:00:00:01", attacker_mac, 0x86DD, f)
                                   for f in na], 3)  # fmt: skip
    time.sleep(0.5)
    host_view = net.host.ip("-6", "neigh", "show", victim_ll, "dev", bridge).stdout
    assert attacker_mac not in host_view and victim_mac in host_view, host_view
    assert attacker_mac not in victim.ip("-6", "neigh", "show").stdout
    assert victim_mac not in net.host.ip("-6", "neigh", "show", attacker_ll, "dev", bridge).stdout


def test_isolated_ports_do_not_reach_each_other_through_the_host(net: World) -> None:
    a, _, _ = guest(net, "a", isolated=True)
    b, _, _ = guest(net, "b", isolated=True)
    addr_a, addr_b = dhcp_lease(a), dhcp_lease(b)
    assert addr_a and addr_b and can_ping(a, "10.79.0.1") and can_ping(b, "10.79.0.1")
    # a /32 route through the gateway: the routed hairpin
    a.ip("route", "add", f"{addr_b}/32", "via", "10.79.0.1")
    b.ip("route", "add", f"{addr_a}/32", "via", "10.79.0.1")
    assert not can_ping(a, addr_b, wait=0.5)
    assert can_tcp(a, b, addr_b, timeout=1.0) is None


def test_guests_reach_only_their_networks_services_on_the_host(net: World) -> None:
    g, _, _ = guest(net, "g")
    assert dhcp_lease(g)
    assert can_tcp(g, net.host, "10.79.0.1", port=5301)  # the host's address on the network
    assert can_tcp(g, net.host, UPLINK_HOST, port=5302) is None  # the uplink's: not
    assert not can_ping(g, UPLINK_HOST, wait=0.5)


def test_declared_static_addresses_work_with_the_guard_on(net: World) -> None:
    ns = net.guest("static")
    port = net.vn.create_port(
        "hostile",
        NetworkPort(
            network="hostile",
            attachment=Attachment(
                AttachmentKind.VETH, netns=ns.name, addresses=["10.79.0.50", "fd00:79::50"]
            ),
        ),
    )
    assert port.attachment.addresses == ["10.79.0.50", "fd00:79::50"]
    ns.ip("addr", "add", "10.79.0.50/24", "dev", "eth0")
    ns.ip("-6", "addr", "add", "fd00:79::50/64", "dev", "eth0", "nodad")
    assert can_ping(ns, "10.79.0.1") and can_ping(ns, "fd00:79::1")
    # an address it did not declare stays blocked
    ns.ip("addr", "add", "10.79.0.51/24", "dev", "eth0")
    assert ns.exec("ping", "-c", "1", "-W", "1", "-I", "10.79.0.51", "10.79.0.1",
                   check=False).returncode != 0  # fmt: skip
    with pytest.raises(Conflict, match="declared by port"):
        net.vn.create_port(
            "hostile",
            NetworkPort(network="hostile", attachment=Attachment(addresses=["10.79.0.50"])),
        )
    for bad, reason in (("10.80.0.5", "not on any"), ("10.79.0.1", "host's own"),
                        ("10.79.0.20", "reserved for"), ("10.79.0.255", "broadcast"),
                        ("fe80::1%eth0", "scope id")):  # fmt: skip
        with pytest.raises(InvalidInput, match=reason):
            net.vn.create_port(
                "hostile", NetworkPort(network="hostile", attachment=Attachment(addresses=[bad]))
            )


def test_a_guest_without_spoof_checks_cannot_grow_the_bridges_table_without_bound(
    world: World,
) -> None:
    """Linux bridge: learning is bounded; guarded guests' MACs are static and keep unicast."""
    from virtnet.services import fdb_limit

    world.vn.create_network(NET)
    bridge = bridge_of(world)
    index = int(world.host.exec("cat", f"/sys/class/net/{bridge}/ifindex").stdout)
    limit = world.host.exec(sys.executable, "-c", "import sys; from virtnet.services import "
                            f"fdb_limit as f; print(f.max_learned({index}))").stdout.strip()  # fmt: skip
    if limit in ("None", "0"):
        pytest.skip("this kernel has no limit on learned bridge entries (Linux < 6.8)")
    assert int(limit) == fdb_limit.DEFAULT_MAX_LEARNED
    flooder, _, flooder_mac = guest(world, "flooder", spoof_check=False)
    victim, _, victim_mac = guest(world, "victim")
    flood = [frames.ethernet(BROADCAST, f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                             f"{i & 255:02x}", 0x88B5, b"\0" * 46)
             for i in range(fdb_limit.DEFAULT_MAX_LEARNED + 2000)]  # fmt: skip
    frames.send(flooder, "eth0", flood)
    learned = world.host.exec(sys.executable, "-c", "from virtnet.services import fdb_limit "
                              f"as f; print(f.learned({index}))").stdout.strip()  # fmt: skip
    assert int(learned) <= fdb_limit.DEFAULT_MAX_LEARNED
    fdb = world.host.exec("bridge", "fdb", "show", "br", bridge).stdout
    assert f"{victim_mac} dev " in fdb and "static" in fdb.split(victim_mac)[1].splitlines()[0]
    assert dhcp_lease(victim) and can_ping(victim, "10.79.0.1")
    assert flooder_mac  # the flooder itself still works: it is only bounded


def _ping6_from(ns: Namespace, source: str, within: float = 10) -> bool:
    """A ping from ``source``, retried for ``within`` seconds: the lease script opens the
    guard a moment after the client has its reply (longer on a loaded machine)."""
    if source not in ns.ip("-6", "addr", "show", "eth0").stdout:
        ns.ip("-6", "addr", "add", f"{source}/128", "dev", "eth0", "nodad")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done = ns.exec("ping", "-6", "-c", "1", "-W", "1", "-I", source, "fd00:79::1",
                       check=False)  # fmt: skip
        if done.returncode == 0:
            return True
    return False


def test_a_forged_dhcpv6_duid_does_not_hand_over_another_guests_address(net: World) -> None:
    victim, _, victim_mac = guest(net, "v6victim")
    attacker, _, _ = guest(net, "v6thief")
    address = dhcpv6.take(victim, dhcpv6.duid_ll(victim_mac))
    assert address and address.startswith("fd00:79::1")
    assert _ping6_from(victim, address)
    # the attacker asks for a lease in the victim's name (its DUID and IAID): dnsmasq finds
    # the lease by DUID and gives the same address, now recorded with the attacker's MAC
    assert dhcpv6.take(attacker, dhcpv6.duid_ll(victim_mac)) == address
    assert not _ping6_from(attacker, address, within=3)
    assert _ping6_from(victim, address)


def test_a_forged_dhcpv6_release_does_not_cut_another_guest_off(net: World) -> None:
    victim, _, victim_mac = guest(net, "v6rel")
    attacker, _, _ = guest(net, "v6forger")
    address = dhcpv6.take(victim, dhcpv6.duid_ll(victim_mac))
    assert address and _ping6_from(victim, address)
    attacker.exec(sys.executable, "-m", "virtnet.testing.dhcpv6", "release", "eth0",
                  dhcpv6.duid_ll(victim_mac).hex(), address)  # fmt: skip
    time.sleep(0.5)
    assert any(lease.ip == address for lease in net.vn.dhcp_leases("hostile"))
    assert _ping6_from(victim, address)


ISOLATED = """<network><name>iso</name><bridge name='vtbr-iso' stp='off'/>
  <ip address='10.83.0.1' prefix='24'><dhcp><range start='10.83.0.100' end='10.83.0.150'/>
  </dhcp></ip></network>"""


def test_an_isolated_networks_guests_reach_the_host_on_that_network_only(world: World) -> None:
    world.vn.create_network(ISOLATED)
    world.vn.create_network(NET)  # another network's gateway is another host address
    g, _ = world.plug("iso", "g")
    assert dhcp_lease(g)
    assert can_tcp(g, world.host, "10.83.0.1", port=5303)  # as the seed's Guest C does
    g.ip("route", "add", "default", "dev", "eth0")  # try the host's other addresses anyway
    assert can_tcp(g, world.host, UPLINK_HOST, port=5304) is None
    assert can_tcp(g, world.host, "10.79.0.1", port=5305) is None
    [conf] = [c for c in (world.run_dir / "dnsmasq").glob("*/dnsmasq.conf")
              if "interface=vtbr-iso" in c.read_text()]  # fmt: skip
    assert "no-resolv" in conf.read_text().splitlines()  # its DNS answers local names only


def test_a_refused_live_update_leaves_the_running_network_as_it_was(world: World) -> None:
    world.vn.create_network(NET)
    g, _ = world.plug("hostile", "g")
    assert dhcp_lease(g)
    [pid_file] = (world.run_dir / "dnsmasq").glob("*/dnsmasq.pid")
    pid, live = pid_file.read_text(), world.vn.dumpxml("hostile")
    conf = next(pid_file.parent.glob("dnsmasq.conf")).read_text()
    for section, snippet in (
        ("dns-srv", "<srv service='ldap' protocol='tcp' target='a' port='99999'/>"),
        ("dns-txt", "<txt name='t' value='a&#10;dhcp-option=6,6.6.6.6'/>"),
        ("ip-dhcp-host", "<host mac='52:54:00:00:00:01&#10;' ip='10.79.0.30'/>"),
    ):
        with pytest.raises(InvalidInput):
            world.vn.update_network("hostile", "add", section, snippet, live=True)
    assert pid_file.read_text() == pid and Path(f"/proc/{pid.strip()}").exists()
    assert world.vn.dumpxml("hostile") == live
    assert next(pid_file.parent.glob("dnsmasq.conf")).read_text() == conf
    assert dhcp_lease(g) and can_ping(g, "10.79.0.1")


def test_a_guarded_port_says_what_it_dropped_and_why(net: World) -> None:
    """net-port-info names each broken rule (and, on nftables, each forged source); the
    honest guest's own traffic is never counted; a port without the guard says why it has
    nothing to show. On both backends that guard."""
    world = net
    ovs = world.vn.network_info("hostile")["backend"] == "ovs"
    attacker, port, attacker_mac = guest(world, "a")
    honest, honest_port, _ = guest(world, "h")
    assert dhcp_lease(attacker) and dhcp_lease(honest) and can_ping(honest, "10.79.0.1")
    # a guest's first packets may beat dnsmasq's lease script to the guard (and OVS counts
    # lazily): what the honest port shows once that is over must never grow again
    honest_before = settled_drops(world, honest_port.uuid or "")
    assert settled_drops(world, port.uuid or "") == []  # nothing forged yet
    forged_ip = frames.ipv4_udp("10.79.0.66", "10.79.0.1", 5000, 53, b"x")
    forged_mac = frames.ipv4_udp("10.79.0.66", "10.79.0.1", 5000, 53, b"y")
    offer = frames.dhcp_offer("10.79.0.201", "10.79.0.254", "52:54:00:00:00:99", "10.79.0.254")
    rogue = frames.ipv4_udp("10.79.0.254", "255.255.255.255", 67, 68, offer)
    frames.send(attacker, "eth0", [
        frames.ethernet(GW_MAC, attacker_mac, 0x0800, forged_ip),
        frames.ethernet(GW_MAC, "52:54:00:de:ad:01", 0x0800, forged_mac),
        frames.ethernet(BROADCAST, attacker_mac, 0x0800, rogue),
    ], 3)  # fmt: skip
    deadline = time.monotonic() + 10  # OVS adds a flow's packets to its rule's count lazily
    while True:
        drops = {(d["reason"], d["source"]): d for d in world.vn.port_drops(port.uuid or "")}
        if sum(d["packets"] for d in drops.values()) >= 9 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    ip_source, mac_source = (None, None) if ovs else ("10.79.0.66", "52:54:00:de:ad:01")
    assert set(drops) == {("dropped4", ip_source), ("dropped_mac", mac_source),
                          ("dropped_dhcp", None)}  # fmt: skip
    assert all(d["packets"] == 3 and d["seconds_ago"] < 60 for d in drops.values())
    why = drops[("dropped4", ip_source)]["why"]
    assert why == (
        "an IPv4 or ARP source that is not this port's lease, reservation or declared address"
        if ovs
        else "10.79.0.66 is not this port's lease, reservation or declared address"
    )
    assert can_ping(honest, "10.79.0.1")  # honest traffic goes on, and is not dropped
    assert settled_drops(world, honest_port.uuid or "") == honest_before
    state = world.run_dir.parent / "state"
    shown = subprocess.run(
        [sys.executable, "-m", "virtnet.cli", "--netns", world.host.name, "--state-dir",
         str(state), "--run-dir", str(world.run_dir), "net-port-info", port.uuid or ""],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "Dropped:        9 packets in the last hour" in shown.stdout
    assert why in shown.stdout
    _, open_port = world.plug("hostile", "o", spoof_check=False)
    with pytest.raises(Unsupported, match="no anti-spoofing"):
        world.vn.port_drops(open_port.uuid or "")
    counts = world.vn.dropped_packets("hostile")  # net-port-list's Dropped column
    honest_count = sum(d["packets"] for d in honest_before)
    assert counts == {port.uuid: 9, honest_port.uuid: honest_count}  # unguarded: not counted
