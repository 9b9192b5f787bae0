"""The OVN backend's integration tier: three chassis (each a namespace with its own
ovsdb-server, ovs-vswitchd on the userspace datapath and ovn-controller), Geneve between them,
a gateway chassis (hv3) with a provider bridge to an outside namespace. virtnet runs on each
chassis (and on a management host) through its CLI; guests are namespaces on veth ports.

Everything waits on OVN's own signals (a port is plugged when OVN says it is up); traffic is
real: DHCP from ovn-controller, ping and TCP across tunnels and through SNAT.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from virtnet.client import Client
from virtnet.ownership import Owner, scope_of
from virtnet.services.ovsdb_rpc import OvsdbRpc
from virtnet.testing import frames
from virtnet.testing.daemon import Daemon
from virtnet.testing.guest import dhcp_lease, resolve, tcp_throughput
from virtnet.testing.netns import Lab, Namespace
from virtnet.testing.ovn import OvnCluster, OvnHost
from virtnet.testing.traffic import can_ping, can_tcp
from virtnet_ovn import nb, ports

OVN = "xmlns:ovn='https://virtnet.dev/xmlns/ovn/1'"
ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = "198.51.100.1"
BROADCAST = "ff:ff:ff:ff:ff:ff"


class World:
    def __init__(self, lab: Lab, cluster: OvnCluster, outside: Namespace) -> None:
        self.lab, self.cluster, self.outside = lab, cluster, outside
        self.mgmt = cluster.host(name="mgmt")
        self.hv = {ch.name: cluster.host(ch) for ch in cluster.chassis}

    def guest(self, host: OvnHost, network: str) -> tuple[Namespace, str]:
        """A guest namespace on a veth port of ``network`` made by virtnet on ``host``."""
        ns = self.lab.netns("g" + uuid.uuid4().hex[:6])
        port = host.cli("net-port-create", network, "--netns", ns.name).stdout.strip()
        return ns, port

    def stop(self, name: str) -> None:
        """Destroy and undefine ``name`` from the management host; each chassis's virtnet
        then unplugs what is left of it there (``virtnet gc``; virtnetd does it by itself)."""
        self.mgmt.cli("net-destroy", name)
        self.mgmt.cli("net-undefine", name)
        for host in self.hv.values():
            host.cli("gc")

    def network(self, xml: str, tmp: Path) -> str:
        name = "o" + uuid.uuid4().hex[:7]
        path = tmp / f"{name}.xml"
        path.write_text(xml.format(name=name, ovn=OVN))
        self.mgmt.cli("net-define", "--backend", "ovn", str(path))
        return name


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    lab = Lab()
    cluster = OvnCluster(lab)
    try:
        cluster.start(chassis=3)
        outside = lab.netns("outside")
        cluster.provider_bridge(cluster.chassis[2], "physnet1", outside, f"{OUTSIDE}/24")
        yield World(lab, cluster, outside)
    finally:
        cluster.stop()
        lab.cleanup()


#: the nat network of docs/ovn.md, as the docs show it
NAT = re.search(r"```xml\n(<network>.*?</network>)", (ROOT / "docs" / "ovn.md").read_text(), re.S)[
    1
]  # type: ignore[index]
NAT = NAT.replace("<name>tenant1</name>", "<name>{name}</name>")


def test_guests_on_two_hosts_share_a_network_and_leave_through_the_gateway(
    world: World, tmp_path: Path
) -> None:
    name = world.network(NAT, tmp_path)
    world.hv["hv3"].cli("net-start", name)  # started from a third host: active for all
    g1, p1 = world.guest(world.hv["hv1"], name)
    g2, p2 = world.guest(world.hv["hv2"], name)
    try:
        info = json.loads(world.hv["hv1"].cli("net-port-info", p1, "--json").stdout)["port"]
        assert info["attachment"]["addresses"] == ["10.70.0.10"]  # chosen when plugged
        assert dhcp_lease(g1) == "10.70.0.10"  # ovn-controller answers: no dnsmasq anywhere
        assert dhcp_lease(g2) == "10.70.0.11"
        assert can_ping(g1, "10.70.0.11")  # across the Geneve tunnel hv1 -> hv2
        assert can_tcp(g1, g2, "10.70.0.11") == "10.70.0.10"
        assert can_ping(g2, "10.70.0.1")  # the distributed router
        assert can_tcp(g2, world.outside, OUTSIDE) == "198.51.100.254"  # SNAT on hv3
        assert can_tcp(g1, world.outside, OUTSIDE, port=5202) == "198.51.100.254"
        # nat means out, not in (libvirt's semantics): an outside host routing to the
        # subnet through the gateway reaches no guest, though OVN's router would route it
        world.outside.ip("route", "replace", "10.70.0.0/24", "via", "198.51.100.254")
        assert not can_ping(world.outside, "10.70.0.10")
        assert can_tcp(world.outside, g1, "10.70.0.10", port=5203) is None
        assert can_tcp(g1, world.outside, OUTSIDE, port=5204) == "198.51.100.254"  # still out
        mine = json.loads(world.hv["hv1"].cli("net-port-list", name, "--json").stdout)
        assert [p["uuid"] for p in mine] == [p1]  # each host lists the ports it made
        assert world.hv["hv1"].cli("net-port-delete", p2, check=False).returncode != 0
    finally:
        world.hv["hv1"].cli("net-port-delete", p1)
        world.hv["hv2"].cli("net-port-delete", p2)
        assert world.cluster.central is not None  # unplugged: gone from OVN too
        assert not world.cluster.central.nbctl("--bare", "--columns=name", "find",
                                               "Logical_Switch_Port", f"name={p1}").strip()  # fmt: skip
        world.stop(name)
    assert "vnet" not in " ".join(world.cluster.chassis[0].ns.links())


ISOLATED = """<network><name>{name}</name><forward mode='route'/><port isolated='yes'/>
  <ip address='10.71.0.1' prefix='24'><dhcp><range start='10.71.0.10' end='10.71.0.99'/></dhcp></ip>
</network>"""


def test_port_security_and_isolation_hold_across_hosts(world: World, tmp_path: Path) -> None:
    name = world.network(ISOLATED, tmp_path)
    world.mgmt.cli("net-start", name)
    g1, _ = world.guest(world.hv["hv1"], name)
    g2, _ = world.guest(world.hv["hv2"], name)
    try:
        assert dhcp_lease(g1) == "10.71.0.10" and dhcp_lease(g2) == "10.71.0.11"
        assert can_ping(g1, "10.71.0.1") and can_ping(g2, "10.71.0.1")  # the gateway: yes
        assert not can_ping(g1, "10.71.0.11")  # each other: no (isolated ports)
        g1.ip("addr", "add", "10.71.0.200/24", "dev", "eth0")  # a source it was not given
        assert g1.exec("ping", "-c", "2", "-W", "1", "-I", "10.71.0.200", "10.71.0.1", check=False).returncode != 0  # fmt: skip
        assert can_ping(g1, "10.71.0.1")  # its own address still works
        g1.ip("link", "set", "eth0", "address", "52:54:00:66:66:66")  # and a MAC it was not
        assert g1.exec("ping", "-c", "2", "-W", "1", "10.71.0.1", check=False).returncode != 0
    finally:
        world.stop(name)


def test_a_guest_cannot_be_the_dhcp_server_or_the_router_of_others(
    world: World, tmp_path: Path
) -> None:
    """Port security lets a guest use its own addresses, so a forged DHCP offer or router
    advertisement from them passes it: the server guard drops them where they enter. The
    attacker's frames really leave it (seen on its port link); the victim on another host
    sees its harmless broadcast, and none of the forged ones."""
    name = world.network(NAT, tmp_path)
    world.mgmt.cli("net-start", name)
    attacker, port = world.guest(world.hv["hv1"], name)
    victim, _ = world.guest(world.hv["hv2"], name)
    try:
        mine = dhcp_lease(attacker)
        assert mine and dhcp_lease(victim)
        info = json.loads(world.hv["hv1"].cli("net-port-info", port, "--json").stdout)["port"]
        mac, link = info["mac"], info["attachment"]["ifname"]
        offer = frames.dhcp_offer("10.70.0.77", mine, "52:54:00:00:00:99", mine)
        forged = [
            frames.ethernet(BROADCAST, mac, 0x0800, frames.ipv4_udp(mine, "255.255.255.255",
                                                                    67, 68, offer)),
            frames.ethernet("33:33:00:00:00:01", mac, 0x86DD, frames.ipv6(
                frames.link_local(mac), "ff02::1", 58, frames.router_advert("fd66::/64", mac))),
        ]  # fmt: skip
        harmless = frames.ethernet(BROADCAST, mac, 0x0800,
                                   frames.ipv4_udp(mine, "255.255.255.255", 9, 9, b"marker"))  # fmt: skip
        on_link = world.cluster.chassis[0].ns.popen(
            "tcpdump", "-l", "-n", "-e", "-i", link, f"ether src {mac}",
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        at_victim = victim.popen("tcpdump", "-l", "-n", "-e", "-i", "eth0", f"ether src {mac}",
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        seen_victim = _until(at_victim, ".9 > ", lambda: frames.send(
            attacker, "eth0", [*forged, harmless]))  # fmt: skip
        seen_link = _until(on_link, ".9 > ", lambda: None)
        assert ".67 > " in seen_link and "router advertisement" in seen_link  # really sent
        assert ".67 > " not in seen_victim and "advertisement" not in seen_victim
        assert "fd66:" not in victim.ip("-6", "addr", "show", "eth0").stdout
    finally:
        world.stop(name)


def _until(sniffer: subprocess.Popen[str], marker: str, send: Callable[[], None]) -> str:
    """Send (again, up to 20 times) until ``sniffer`` printed a line with ``marker``; all it
    printed. The marker is the last frame sent: what came before it has been through."""
    assert sniffer.stdout is not None
    os.set_blocking(sniffer.stdout.fileno(), False)
    text = ""
    try:
        for _ in range(20):
            send()
            ready, _, _ = select.select([sniffer.stdout], [], [], 1.0)
            if ready:
                text += sniffer.stdout.read() or ""
            if marker in text:
                return text
        return text
    finally:
        sniffer.terminate()
        sniffer.wait(timeout=10)


def test_the_daemon_reports_ports_up_and_down_and_unplugs_what_another_host_stopped(
    world: World, tmp_path: Path
) -> None:
    """virtnetd on hv1: OVN's ``up`` of its ports as events (the plug, then the datapath
    losing the port), and a network destroyed from another host unplugged here."""
    hv1 = world.hv["hv1"]
    env = {"VIRTNET_OVSDB": hv1.env()["VIRTNET_OVSDB"], "VIRTNET_OVN_NB": ""}
    daemon = Daemon(hv1.ns.name, hv1.dir / "state", hv1.dir / "run", world.lab, env=env)
    daemon.start(
        "--interval",
        "0.5",
        "--driver-option",
        f"ovn.nb={hv1.nb}",
        "--driver-option",
        f"ovn.rundir={hv1.dir}",
    )  # as an operator would
    try:
        name = world.network(NAT, tmp_path)
        world.mgmt.cli("net-start", name)
        with Client.connect(daemon.socket, timeout=30) as client:
            events = client.events()
            g1, port = world.guest(hv1, name)
            up = next(e for e in events if e["kind"] == "port-up" and e["port"] == port)
            assert up["network"] == name and up["detail"]["chassis"] == "hv1"
            ifname = json.loads(hv1.cli("net-port-info", port, "--json").stdout)["port"][
                "attachment"
            ]
            world.cluster.chassis[0].vsctl("remove", "interface", ifname["ifname"],
                                           "external_ids", "iface-id")  # fmt: skip
            next(e for e in events if e["kind"] == "port-down" and e["port"] == port)
            world.mgmt.cli("net-destroy", name)  # another host
            next(e for e in events if e["kind"] == "port-unplugged" and e["port"] == port)
        assert not [link for link in hv1.ns.links() if link.startswith("vnet")]
        assert json.loads(daemon.cli("net-port-list", name, "--json").stdout or "[]") == []
        assert "eth0" not in g1.links()
        world.mgmt.cli("net-undefine", name)
    finally:
        daemon.stop()


def test_guests_elsewhere_keep_talking_while_a_chassis_is_down_and_it_comes_back(
    world: World, tmp_path: Path
) -> None:
    name = world.network(NAT, tmp_path)
    world.mgmt.cli("net-start", name)
    g1, _ = world.guest(world.hv["hv1"], name)
    g2, _ = world.guest(world.hv["hv2"], name)
    g3, _ = world.guest(world.hv["hv3"], name)
    hv2 = world.cluster.chassis[1]
    try:
        assert dhcp_lease(g1) and dhcp_lease(g2) and dhcp_lease(g3)
        a1 = g1.exec("ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
        a3 = g3.exec("ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
        assert not _ovn_notes(world.hv["hv2"])  # a chassis whose ovn-controller answers
        hv2.crash()
        assert can_ping(g1, a3) and can_ping(g3, a1)  # hv1 <-> hv3 do not need hv2
        assert can_tcp(g3, world.outside, OUTSIDE) == "198.51.100.254"
        assert not can_ping(g2, a1)
        # still registered in the southbound database, but readiness and a plug know better
        notes = _ovn_notes(world.hv["hv2"])
        assert any("ovn-controller is not running" in n and "is gone" in n for n in notes), notes
        before = hv2.ns.links()
        late = world.lab.netns("g" + uuid.uuid4().hex[:6])
        done = world.hv["hv2"].cli("net-port-create", name, "--netns", late.name, check=False,
                                   timeout=20)  # fmt: skip
        assert done.returncode == 1 and "ovn-controller is not running" in done.stderr
        assert done.stderr.count("\n") == 1 and hv2.ns.links() == before
        hv2.revive()
        assert not _ovn_notes(world.hv["hv2"])
        assert world.cluster.central is not None
        # every chassis, hv2 too, caught up with the database and put its flows in (OVN's
        # own signal; the port's up stayed true: a killed ovn-controller keeps its Chassis)
        world.cluster.central.nbctl("--timeout=60", "--wait=hv", "sync")
        assert can_ping(g2, a1)  # its port came back by itself: OVSDB kept it, OVN rebinds
    finally:
        world.stop(name)


def _ovn_notes(host: OvnHost) -> list[str]:
    """What ``virtnet drivers`` says of the ovn backend on ``host`` (which must be ready)."""
    listed = json.loads(host.cli("drivers", "--json").stdout)
    (ovn,) = [b for b in listed if b["name"] == "ovn"]
    assert ovn["ready"] and not ovn["problems"], ovn
    return list(ovn["notes"])


def test_readiness_says_what_a_host_that_is_no_chassis_cannot_do(world: World) -> None:
    (note,) = _ovn_notes(world.mgmt)
    assert note.startswith("not a chassis (networks can be defined and started, not plugged)")


def test_an_unreachable_northbound_database_at_plug_is_one_line_and_leaves_nothing(
    world: World, tmp_path: Path
) -> None:
    name = world.network(NAT, tmp_path)
    world.mgmt.cli("net-start", name)
    hv1 = world.hv["hv1"]
    ns = world.lab.netns("g" + uuid.uuid4().hex[:6])
    before = hv1.ns.links()
    ports_before = hv1.cli("net-port-list", name).stdout
    try:
        down = {"VIRTNET_OVN_NB": f"unix:{tmp_path}/gone.sock"}
        done = hv1.cli("net-port-create", name, "--netns", ns.name, check=False, env=down)
        assert done.returncode != 0 and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert hv1.ns.links() == before and ns.links() == {"lo"}
        ports = world.cluster.chassis[0].vsctl("list-ports", "br-int").split()
        assert [p for p in ports if not p.startswith("ovn-")] == []  # tunnels only
        assert hv1.cli("net-port-list", name).stdout == ports_before
    finally:
        world.stop(name)


SERVICES = """<network><name>{name}</name><forward mode='route'/>
  <dns><host ip='10.72.0.5'><hostname>db</hostname><hostname>db.lab.test</hostname></host></dns>
  <ip address='10.72.0.1' prefix='24'><dhcp><range start='10.72.0.10' end='10.72.0.99'/></dhcp></ip>
  <ip family='ipv6' address='fd00:72::1' prefix='64'/>
</network>"""


def test_names_and_ipv6_router_advertisements_come_from_ovn(world: World, tmp_path: Path) -> None:
    """No dnsmasq anywhere: ovn-controller answers the network's DNS names and sends its
    router advertisements (SLAAC), on whichever chassis the guest runs."""
    name = world.network(SERVICES, tmp_path)
    world.mgmt.cli("net-start", name)
    guest, _ = world.guest(world.hv["hv2"], name)
    try:
        guest.exec("sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2")
        assert dhcp_lease(guest) == "10.72.0.10"
        assert resolve(guest, "db.lab.test", "10.72.0.1") == ["10.72.0.5"]
        assert resolve(guest, "db", "10.72.0.1") == ["10.72.0.5"]
        guest.ip("link", "set", "eth0", "down")  # a router solicitation at once
        guest.ip("link", "set", "eth0", "up")
        addresses = ""
        for _ in range(50):  # the RA answers the solicitation; DAD then takes ~1 s
            addresses = guest.ip("-6", "addr", "show", "eth0", "scope", "global").stdout
            if "fd00:72:" in addresses and "tentative" not in addresses:
                break
            select.select([], [], [], 0.2)
        assert "fd00:72:" in addresses, addresses
        assert can_ping(guest, "fd00:72::1")
    finally:
        world.stop(name)


LIMITED = """<network><name>{name}</name><forward mode='route'/>
  <ip address='10.73.0.1' prefix='24'><dhcp><range start='10.73.0.10' end='10.73.0.99'/></dhcp></ip>
  <portgroup name='slow'><bandwidth><outbound average='250' burst='64'/></bandwidth></portgroup>
</network>"""


def test_a_ports_bandwidth_is_limited_by_ovn_qos(world: World, tmp_path: Path) -> None:
    """libvirt's <bandwidth> (kilobytes) as an OVN QoS meter where the guest's traffic
    enters: 250 KB/s out of the limited guest, while the other way is not limited."""
    name = world.network(LIMITED, tmp_path)
    world.mgmt.cli("net-start", name)
    slow = world.lab.netns("g" + uuid.uuid4().hex[:6])
    port = world.hv["hv1"].cli("net-port-create", name, "--netns", slow.name, "--portgroup",
                               "slow").stdout.strip()  # fmt: skip
    fast, _ = world.guest(world.hv["hv2"], name)
    try:
        assert dhcp_lease(slow) == "10.73.0.10" and dhcp_lease(fast) == "10.73.0.11"
        out = tcp_throughput(slow, fast, "10.73.0.11", seconds=3)
        back = tcp_throughput(fast, slow, "10.73.0.10", seconds=3, port=5302)
        assert out < 250_000 * 1.5, out  # bytes/s, with room for the burst
        assert back > out * 3, (back, out)
        central = world.cluster.central
        assert central is not None
        assert port in central.nbctl("list", "QoS")  # a meter of its own
        world.hv["hv1"].cli("net-port-delete", port)
        assert port not in central.nbctl("list", "QoS")  # gone with it
    finally:
        world.stop(name)


@pytest.mark.parametrize("fault", ["raise", "kill"])
def test_a_plug_that_fails_or_is_killed_at_any_step_leaves_nothing_here_or_in_ovn(
    world: World, tmp_path: Path, fault: str
) -> None:
    """The core's promise, for a backend whose objects are half in a shared database: a plug
    that fails at step K is rolled back, one killed before step K is undone by the next
    command; either way no logical port stays in OVN and no link or OVS port on the host."""
    name = world.network(NAT, tmp_path)
    world.mgmt.cli("net-start", name)
    hv1, chassis = world.hv["hv1"], world.cluster.chassis[0]
    assert world.cluster.central is not None
    links_before = chassis.ns.links()
    try:
        for step in range(1, 7):  # after the logical port (step 0) exists, to the last (6)
            guest = world.lab.netns("g" + uuid.uuid4().hex[:6])
            done = hv1.cli("net-port-create", name, "--netns", guest.name, check=False,
                           env={"VIRTNET_FAULT": f"port:{fault}:{step}"})  # fmt: skip
            assert done.returncode != 0, (step, done.stdout)
            hv1.cli("net-list")  # the next command: undoes what a killed one left
            ports = world.cluster.central.nbctl("--bare", "--columns=name", "find",
                                                "Logical_Switch_Port",
                                                "external_ids:virtnet-role=port")  # fmt: skip
            assert ports.strip() == "", (step, ports)
            assert chassis.ns.links() == links_before, step
            left = [p for p in chassis.vsctl("list-ports", "br-int").split()
                    if not p.startswith("ovn-")]  # fmt: skip
            assert left == [], step
            assert json.loads(hv1.cli("net-port-list", name, "--json").stdout) == []
    finally:
        world.stop(name)


def test_reconcile_puts_back_a_lost_logical_port_and_removes_one_left_behind(
    world: World, tmp_path: Path
) -> None:
    """A port whose logical port was deleted behind virtnet's back gets it back (and talks
    again); a logical port this host made for a port it no longer has (a rollback that could
    not reach the database) is removed; another host's ports are not touched."""
    name = world.network(NAT, tmp_path)
    world.mgmt.cli("net-start", name)
    hv1 = world.hv["hv1"]
    central = world.cluster.central
    assert central is not None
    g1, p1 = world.guest(hv1, name)
    g2, p2 = world.guest(world.hv["hv2"], name)
    try:
        assert dhcp_lease(g1) == "10.70.0.10" and dhcp_lease(g2) == "10.70.0.11"
        central.nbctl("lsp-del", p1)
        central.nbctl("--timeout=60", "--wait=hv", "sync")  # every chassis dropped its flows
        assert not can_ping(g1, "10.70.0.11")
        u = json.loads(world.mgmt.cli("net-info", name, "--json").stdout)["uuid"]
        label = Owner(u, str(uuid.uuid4()), scope_of(hv1.dir / "state")).label
        with OvsdbRpc(central.nb) as db:  # what a rollback that could not reach OVN leaves
            orphan = label.rsplit("=", 1)[1]
            switch = str(nb.the_switch(db, u)["_uuid"])
            ports.add_port(db, u, orphan, "52:54:00:aa:bb:cc 10.70.0.90", True, "hv1", None, [],
                           switch, [], None, label)  # fmt: skip
        done = hv1.cli("net-reconcile", name).stdout
        assert f"re-created OVN logical switch port {p1}" in done
        assert f"removed OVN logical switch port {orphan}" in done
        assert can_ping(g1, "10.70.0.11")
        names = central.nbctl("--bare", "--columns=name", "find", "Logical_Switch_Port",
                              "external_ids:virtnet-role=port").split()  # fmt: skip
        assert sorted(names) == sorted([p1, p2])  # hv2's port untouched
    finally:
        world.stop(name)


HA = """<network><name>{name}</name><forward mode='nat'/>
  <ip address='10.74.0.1' prefix='24'><dhcp><range start='10.74.0.10' end='10.74.0.99'/></dhcp></ip>
  <metadata><ovn:uplink {ovn} physnet='physnet2' address='203.0.113.254/24'
    gateway='203.0.113.1' chassis='hv3 hv2'/></metadata></network>"""


def _gateway_lan(world: World) -> Namespace:
    """A second provider network, physnet2, reached by both hv3 and hv2 (a Linux bridge in
    its own namespace, 203.0.113.1 on it)."""
    lan = world.lab.netns("lan2")
    lan.ip("link", "add", "sw", "type", "bridge")
    lan.ip("link", "set", "sw", "up")
    lan.ip("addr", "add", "203.0.113.1/24", "dev", "sw")
    for ch in world.cluster.chassis[1:]:
        ch.ns.ip("link", "add", "eth-ha", "type", "veth", "peer", "name", ch.name, "netns",
                 lan.name)  # fmt: skip
        lan.ip("link", "set", ch.name, "master", "sw", "up")
        lan.exec("ethtool", "-K", ch.name, "tx", "off", "tso", "off", "gso", "off", check=False)
        world.cluster.attach_provider(ch, "physnet2", "eth-ha")
    return lan


def _active_gateway(world: World, name: str, timeout: int = 60) -> Callable[[str], None]:
    """Waits (OVN's own signal, no sleeping) until the network's gateway port is bound to
    the chassis named."""
    central = world.cluster.central
    assert central is not None

    def until(chassis: str) -> None:
        row = central.sbctl("--bare", "--columns=_uuid", "find", "Chassis", f"name={chassis}")
        gateway = f"cr-vn-{nb.short_id(_uuid(world, name))}-gw"  # the router's uplink port
        central.sbctl(f"--timeout={timeout}", "wait-until", "Port_Binding", gateway,
                      f"chassis={row.strip()}")  # fmt: skip

    return until


def _uuid(world: World, name: str) -> str:
    return str(json.loads(world.mgmt.cli("net-info", name, "--json").stdout)["uuid"])


def test_a_nat_network_leaves_through_its_second_gateway_when_the_first_dies(
    world: World, tmp_path: Path
) -> None:
    """Gateway chassis hv3 then hv2 (``chassis='hv3 hv2'``): the guest on hv1 leaves through
    hv3; hv3's switch dies and OVN moves the gateway to hv2 by itself (BFD between the
    chassis), the guest's new connections leave through hv2 with the same SNAT address;
    hv3 back, the gateway returns to it."""
    lan = _gateway_lan(world)
    name = world.network(HA, tmp_path)
    world.mgmt.cli("net-start", name)
    hv3 = world.cluster.chassis[2]
    active = _active_gateway(world, name)
    try:
        g1, _ = world.guest(world.hv["hv1"], name)
        assert dhcp_lease(g1) == "10.74.0.10"
        active("hv3")
        assert can_tcp(g1, lan, "203.0.113.1", port=5301) == "203.0.113.254"
        hv3.crash()
        active("hv2")
        assert can_tcp(g1, lan, "203.0.113.1", port=5302, timeout=10) == "203.0.113.254"
        hv3.revive()
        active("hv3")  # the preferred gateway takes it back
        assert can_tcp(g1, lan, "203.0.113.1", port=5303, timeout=10) == "203.0.113.254"
    finally:
        if not os.path.exists(f"/proc/{hv3.daemons.pid('ovn-controller')}"):
            hv3.revive()
        world.stop(name)


ROUTED = """<network><name>{name}</name><forward mode='{mode}'/>
  <ip address='10.{net}.0.1' prefix='24'><dhcp><range start='10.{net}.0.10' end='10.{net}.0.99'/>
  </dhcp></ip>
  <metadata><ovn:uplink {ovn} physnet='physnet1' address='198.51.100.{last}/24'
    gateway='{outside}' chassis='hv3'/></metadata></network>"""


@pytest.mark.parametrize("mode,net,last", [("route", 75, 253), ("open", 76, 252)])
def test_a_routed_network_meets_the_outside_with_its_own_addresses(
    world: World, tmp_path: Path, mode: str, net: int, last: int
) -> None:
    """route and open: the router forwards without NAT through the gateway chassis (the
    outside sees the guest's own address), and the outside, routing the subnet to the
    uplink address, reaches the guest on hv1 (nothing but port security in the way)."""
    xml = ROUTED.replace("{mode}", mode).replace("{net}", str(net)).replace("{last}", str(last))
    name = world.network(xml.replace("{outside}", OUTSIDE), tmp_path)
    world.mgmt.cli("net-start", name)
    world.outside.ip("route", "add", f"10.{net}.0.0/24", "via", f"198.51.100.{last}")
    try:
        g1, _ = world.guest(world.hv["hv1"], name)
        address = dhcp_lease(g1)
        assert address == f"10.{net}.0.10"
        assert can_tcp(g1, world.outside, OUTSIDE, port=5401) == address  # no SNAT
        assert can_tcp(world.outside, g1, address, port=5402) == OUTSIDE  # in: routed
    finally:
        world.outside.ip("route", "del", f"10.{net}.0.0/24")
        world.stop(name)
