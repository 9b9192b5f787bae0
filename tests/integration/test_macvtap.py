"""The macvtap backend on a "physical" LAN: a namespace joined to the host's eth1 by a veth.

    [guest ns] macvlan/macvtap on eth1 (host ns) ==== eth0 [lan ns] 192.0.2.1 (the LAN peer)

For VEPA the LAN namespace plays an external switch instead: a Linux bridge ``sw`` holding
eth0, with hairpin on or off on that port.
"""

from __future__ import annotations

import os
import select
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from virtnet.api import Virtnet
from virtnet.errors import Conflict, NotFound
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing import Lab, Namespace, can_ping, snapshot
from virtnet.testing.fixtures import needs_root, run_dir_for_test

pytestmark = [needs_root, pytest.mark.root]
PEER = "192.0.2.1"


@dataclass
class Lan:
    lab: Lab
    host: Namespace
    lan: Namespace
    vn: Virtnet

    def guest(self, network: str, role: str, address: str) -> tuple[Namespace, NetworkPort]:
        ns = self.lab.netns(role)
        port = self.vn.create_port(
            network,
            NetworkPort(
                network=network, attachment=Attachment(AttachmentKind.MACVLAN, netns=ns.name)
            ),
        )
        self.lab.address(ns, "eth0", f"{address}/24")
        return ns, port


@pytest.fixture
def lan(lab: Lab) -> Iterator[Lan]:
    host, wire = lab.netns("host"), lab.netns("lan")
    lab.cable(host, "eth1", wire, "eth0")
    run = run_dir_for_test()
    vn = Virtnet(run / "state", run / "run", netns=host.name)
    try:
        yield Lan(lab, host, wire, vn)
    finally:
        for row in vn.list_networks(inactive=False):
            vn.destroy_network(row.name)
        vn.close()
        os.system(f"rm -rf {run}")


def direct(name: str, mode: str, devices: str = "dev='eth1'") -> str:
    return f"<network><name>{name}</name><forward mode='{mode}' {devices}/></network>"


def peer_on_wire(lan: Lan) -> None:
    lan.lab.address(lan.lan, "eth0", f"{PEER}/24")


def test_bridge_mode_guests_reach_each_other_and_the_lan(lan: Lan) -> None:
    peer_on_wire(lan)
    lan.vn.create_network(direct("dbridge", "bridge"))
    g1, port = lan.guest("dbridge", "g1", "192.0.2.11")
    g2, _ = lan.guest("dbridge", "g2", "192.0.2.12")
    assert port.plug is not None and (port.plug.type, port.plug.dev) == ("direct", "eth1")
    assert can_ping(g1, "192.0.2.12") and can_ping(g2, "192.0.2.11")
    assert can_ping(g1, PEER) and can_ping(g2, PEER)


def test_private_mode_guests_reach_the_lan_not_each_other(lan: Lan) -> None:
    peer_on_wire(lan)
    lan.vn.create_network(direct("dprivate", "private"))
    g1, _ = lan.guest("dprivate", "g1", "192.0.2.11")
    g2, _ = lan.guest("dprivate", "g2", "192.0.2.12")
    assert can_ping(g1, PEER) and can_ping(g2, PEER)
    assert not can_ping(g1, "192.0.2.12")


@pytest.mark.parametrize("hairpin", ["off", "on"])
def test_vepa_guest_traffic_turns_at_the_switch(lan: Lan, hairpin: str) -> None:
    switch = lan.lan
    switch.ip("link", "add", "sw", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    switch.ip("link", "set", "eth0", "master", "sw")
    switch.ip("link", "set", "eth0", "type", "bridge_slave", "hairpin", hairpin)
    switch.ip("link", "set", "sw", "up")
    lan.lab.address(switch, "sw", f"{PEER}/24")
    lan.vn.create_network(direct("dvepa", "vepa"))
    g1, _ = lan.guest("dvepa", "g1", "192.0.2.11")
    g2, _ = lan.guest("dvepa", "g2", "192.0.2.12")
    assert can_ping(g1, PEER) and can_ping(g2, PEER)
    assert can_ping(g1, "192.0.2.12") is (hairpin == "on")


def test_passthrough_gives_one_guest_the_device(lan: Lan) -> None:
    peer_on_wire(lan)
    lan.vn.create_network(direct("dpass", "passthrough"))
    g1, _ = lan.guest("dpass", "g1", "192.0.2.11")
    assert can_ping(g1, PEER)
    before = snapshot(lan.host)
    with pytest.raises(Conflict, match="already passed through"):
        lan.guest("dpass", "g2", "192.0.2.12")
    assert snapshot(lan.host) == before


def test_repair_plans_a_passthrough_port_again_on_its_own_device(lan: Lan) -> None:
    peer_on_wire(lan)
    lan.vn.create_network(direct("dpass", "passthrough"))
    g1, _ = lan.guest("dpass", "g1", "192.0.2.11")
    lan.host.ip("link", "set", "eth1", "down")  # drift no one here can repair
    repair = lan.vn.repair_network("dpass")  # re-planning the port must not refuse eth1
    assert repair.found == repair.remaining == ["forward device eth1 is down"]
    lan.host.ip("link", "set", "eth1", "up")
    assert lan.vn.repair_network("dpass").found == []
    assert can_ping(g1, PEER)


def test_a_pool_gives_each_port_the_least_used_device(lan: Lan) -> None:
    second = lan.lab.netns("lan2")
    lan.lab.cable(lan.host, "eth2", second, "eth0")
    lan.vn.create_network(
        "<network><name>pool</name><forward mode='bridge'><interface dev='eth1'/>"
        "<interface dev='eth2'/></forward></network>"
    )
    devices = [lan.guest("pool", f"p{i}", f"192.0.2.{20 + i}")[1].plug.dev for i in range(3)]  # type: ignore[union-attr]
    assert devices == ["eth1", "eth2", "eth1"]


def test_missing_or_down_device_is_refused(lan: Lan) -> None:
    with pytest.raises(NotFound, match="eth9"):
        lan.vn.create_network(direct("nodev", "bridge", "dev='eth9'"))
    lan.host.ip("link", "set", "eth1", "down")
    with pytest.raises(Conflict, match=r"eth1.? is down"):
        lan.vn.create_network(direct("down", "bridge"))


def arp_request(mac: bytes, ip: bytes, target: bytes) -> bytes:
    ether = b"\xff" * 6 + mac + b"\x08\x06"
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\0" * 6 + target
    return ether + arp


def test_a_vm_port_is_a_character_device_that_talks_to_the_lan(lan: Lan) -> None:
    peer_on_wire(lan)
    lan.vn.create_network(direct("dvm", "bridge"))
    port = lan.vn.create_port(
        "dvm",
        NetworkPort(network="dvm", attachment=Attachment(AttachmentKind.MACVTAP, owner_uid=4242)),
    )
    device = port.attachment.device
    assert device and os.stat(device).st_uid == 4242
    mac = bytes.fromhex((port.mac or "").replace(":", ""))
    fd = os.open(device, os.O_RDWR)
    try:
        vnet_header = b"\0" * 10  # macvtap fds carry a virtio-net header by default
        os.write(fd, vnet_header + arp_request(mac, bytes([192, 0, 2, 77]), bytes([192, 0, 2, 1])))
        answered = False
        for _ in range(50):
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            frame = os.read(fd, 2048)[10:]
            if (
                frame[12:14] == b"\x08\x06"
                and frame[20:22] == b"\x00\x02"
                and frame[28:32] == bytes([192, 0, 2, 1])
            ):
                answered = True
                break
        assert answered, "no ARP reply from the LAN peer"
    finally:
        os.close(fd)
    lan.vn.delete_port(port.uuid or "")
    assert not os.path.exists(device)


def test_destroy_leaves_the_host_as_it_was(lan: Lan) -> None:
    before = snapshot(lan.host)
    lan.vn.create_network(direct("dgone", "bridge"))
    g0, port = lan.guest("dgone", "g0", "192.0.2.10")
    lan.vn.delete_port(port.uuid or "")
    assert "eth0" not in g0.links()  # unplugging removed the macvlan in the guest
    g1, _ = lan.guest("dgone", "g1", "192.0.2.11")
    lan.vn.create_port(
        "dgone", NetworkPort(network="dgone", attachment=Attachment(AttachmentKind.MACVTAP))
    )
    assert snapshot(lan.host) != before
    lan.vn.destroy_network("dgone")
    assert snapshot(lan.host) == before
    assert "eth0" not in g1.links()
