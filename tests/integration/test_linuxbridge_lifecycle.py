"""Start, stop, unplug and update leave the host exactly as they found it, or refuse cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from virtnet.errors import Conflict, OperationFailed
from virtnet.model.network import Bandwidth, Rate
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing import can_ping, dhcp_lease, snapshot
from virtnet.testing.fixtures import needs_root
from virtnet.testing.world import World

pytestmark = [needs_root, pytest.mark.root]

XML = """<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}' stp='off'/>
  <dns><host ip='{subnet}.5'><hostname>five</hostname></host></dns>
  <ip address='{subnet}.1' prefix='24'><dhcp><range start='{subnet}.100' end='{subnet}.150'/>
  </dhcp></ip><ip family='ipv6' address='fd00:{v6}::1' prefix='64'/></network>"""


def xml(name: str, bridge: str, subnet: str, v6: str = "1") -> str:
    return XML.format(name=name, bridge=bridge, subnet=subnet, v6=v6)


def test_destroy_and_port_delete_restore_the_host_exactly(world: World) -> None:
    world.vn.define_network(xml("snap", "vtbr-snap", "10.79.1"))
    before_start = snapshot(world.host, world.run_dir)
    world.vn.start_network("snap")
    started = snapshot(world.host, world.run_dir)
    assert started != before_start

    guest, veth = world.plug("snap", "g", bandwidth=Bandwidth(inbound=Rate(average=1000)))
    tap = world.vn.create_port(
        "snap", NetworkPort(network="snap", attachment=Attachment(kind=AttachmentKind.TAP))
    )
    assert dhcp_lease(guest)
    world.vn.delete_port(tap.uuid or "")
    world.vn.delete_port(veth.uuid or "")
    after_ports = snapshot(world.host, world.run_dir)
    assert after_ports == started

    world.vn.create_port(
        "snap", NetworkPort(network="snap", attachment=Attachment(kind=AttachmentKind.TAP))
    )
    world.vn.destroy_network("snap")  # also unplugs the port left on it
    assert snapshot(world.host, world.run_dir) == before_start
    assert world.vn.list_ports("snap") == []


def test_a_foreign_nft_table_is_never_touched(world: World) -> None:
    world.host.exec(
        "nft",
        "add table inet foreign; add chain inet foreign fw { type filter hook forward priority 0; "
        "policy accept; }; add rule inet foreign fw counter; add table ip nat",
    )
    foreign = world.host.exec("nft", "list", "table", "inet", "foreign").stdout
    world.vn.create_network(xml("a", "vtbr-a", "10.79.2", "2"))
    world.vn.create_network(xml("b", "vtbr-b", "10.79.3", "3"))
    world.vn.destroy_network("a")
    world.vn.destroy_network("b")
    assert world.host.exec("nft", "list", "table", "inet", "foreign").stdout == foreign
    assert sorted(world.host.nft_tables()) == ["table inet foreign", "table ip nat"]


def test_networks_are_set_elements_not_chains(world: World) -> None:
    from virtnet.services.firewall_rules import CHAINS

    for i in range(3):
        world.vn.create_network(xml(f"n{i}", f"vtbr-n{i}", f"10.79.{10 + i}", str(10 + i)))
    table = json.loads(world.host.exec("nft", "-j", "list", "table", "inet", "virtnet").stdout)
    chains = {item["chain"]["name"] for item in table["nftables"] if "chain" in item}
    assert chains == set(CHAINS)  # the same few chains however many networks run
    forward = world.host.exec("nft", "list", "chain", "inet", "virtnet", "forward").stdout
    assert "vtbr-n" not in forward
    links = next(item["set"] for item in table["nftables"]
                 if item.get("set", {}).get("name") == "links")  # fmt: skip
    assert {e["elem"]["val"] for e in links["elem"]} == {"vtbr-n0", "vtbr-n1", "vtbr-n2"}


def test_subnet_in_use_refused_and_nothing_changes(world: World) -> None:
    world.host.ip("addr", "add", "10.79.4.7/24", "dev", "eth0")
    before = snapshot(world.host, world.run_dir)
    with pytest.raises(Conflict, match=r"10\.79\.4\.0/24 is already in use"):
        world.vn.create_network(xml("clash", "vtbr-clash", "10.79.4", "4"))
    assert snapshot(world.host, world.run_dir) == before


def test_bridge_name_in_use_refused_and_foreign_bridge_kept(world: World) -> None:
    world.host.ip("link", "add", "vtbr-taken", "type", "bridge")
    before = snapshot(world.host, world.run_dir)
    with pytest.raises(Conflict, match="vtbr-taken"):
        world.vn.create_network(xml("taken", "vtbr-taken", "10.79.5", "5"))
    assert snapshot(world.host, world.run_dir) == before  # its bridge was not deleted


def test_a_domain_to_register_with_systemd_resolved_is_refused_and_nothing_changes(
    world: World,
) -> None:
    from virtnet.errors import Unsupported

    registered = xml("reg", "vtbr-reg", "10.79.7", "7").replace(
        "<dns>", "<domain name='reg.example' register='yes'/><dns>"
    )
    world.vn.define_network(registered)
    before = snapshot(world.host, world.run_dir)
    with pytest.raises(Unsupported, match="systemd-resolved") as refused:
        world.vn.start_network("reg")
    assert refused.value.subject == "network/domain/@register"
    assert snapshot(world.host, world.run_dir) == before
    assert "register='yes'" in world.vn.dumpxml("reg")  # kept as written, for libvirt


def test_dns_port_in_use_refused_and_rolled_back(world: World) -> None:
    squatter = world.host.popen(
        sys.executable,
        "-c",
        "import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.bind(('0.0.0.0', 53)); print('bound', flush=True); time.sleep(60)",
        stdout=subprocess.PIPE,
    )
    world.lab.track(squatter)
    assert squatter.stdout is not None and squatter.stdout.readline().strip() == "bound"
    before = snapshot(world.host, world.run_dir)
    with pytest.raises(OperationFailed, match=r"dnsmasq did not start.*in use"):
        world.vn.create_network(xml("dns", "vtbr-dns", "10.79.6", "6"))
    assert snapshot(world.host, world.run_dir) == before


def test_live_dhcp_host_update_keeps_dnsmasq_and_leases(world: World) -> None:
    world.vn.define_network(xml("upd", "vtbr-upd", "10.79.7", "7"))
    world.vn.start_network("upd")
    first, _ = world.plug("upd", "first")
    assert dhcp_lease(first)
    pid = world.host.exec(
        "cat", f"{world.vn.network_info('upd')['status']['dnsmasq']['directory']}/dnsmasq.pid"
    ).stdout
    world.vn.update_network(
        "upd",
        "add",
        "ip-dhcp-host",
        "<host mac='52:54:00:00:cc:01' ip='10.79.7.77'/>",
        live=True,
        config=True,
    )
    second, _ = world.plug("upd", "second", mac="52:54:00:00:cc:01")
    assert dhcp_lease(second) == "10.79.7.77"
    status = world.vn.network_info("upd")["status"]
    assert world.host.exec("cat", f"{status['dnsmasq']['directory']}/dnsmasq.pid").stdout == pid
    assert len(world.vn.dhcp_leases("upd")) == 2
    assert "10.79.7.77" in world.vn.dumpxml("upd", inactive=True)
    # a range change restarts dnsmasq and keeps the leases it gave
    world.vn.update_network(
        "upd", "add", "ip-dhcp-range", "<range start='10.79.7.200' end='10.79.7.210'/>"
    )
    assert len(world.vn.dhcp_leases("upd")) == 2
    assert can_ping(second, "10.79.7.1")


def test_check_reports_drift(world: World) -> None:
    world.vn.create_network(xml("drift", "vtbr-drift", "10.79.8", "8"))
    assert world.vn.check_network("drift") == []
    world.host.exec("nft", "flush", "table", "inet", "virtnet")
    found = world.vn.check_network("drift")
    assert any("missing or empty" in line for line in found)
    world.host.ip("link", "del", "vtbr-drift")
    assert any("bridge vtbr-drift is missing" in line for line in world.vn.check_network("drift"))
    world.vn.destroy_network("drift")  # tears down what is left without complaint
    assert "vtbr-drift" not in world.host.links()


def test_stopping_one_network_leaves_the_others_in_sync(world: World) -> None:
    world.vn.create_network(xml("stays", "vtbr-stays", "10.79.10", "10"))
    world.vn.create_network(xml("goes", "vtbr-goes", "10.79.11", "11"))
    world.vn.destroy_network("goes")  # no guarded port anywhere: the guard table must stay
    assert world.vn.check_network("stays") == []
    world.vn.destroy_network("stays")
    assert world.host.nft_tables() == []  # the last one takes virtnet's tables with it


def test_check_reports_a_dead_dnsmasq(world: World) -> None:
    world.vn.create_network(xml("dead", "vtbr-dead", "10.79.9", "9"))
    directory = world.vn.network_info("dead")["status"]["dnsmasq"]["directory"]
    pid = int(world.host.exec("cat", f"{directory}/dnsmasq.pid").stdout)
    world.host.exec("kill", str(pid))
    for _ in range(100):
        if world.host.exec("test", "-e", f"/proc/{pid}", check=False).returncode != 0:
            break
        time.sleep(0.02)
    assert any(
        "dnsmasq" in line and "not running" in line for line in world.vn.check_network("dead")
    )


CRASHER = """
import os, sys
from virtnet import hookimpl
from virtnet.api import Virtnet
from virtnet.plan import CallStep

class Crash:
    @hookimpl
    def virtnet_network_plan_extra(self):
        return [CallStep("crash", lambda ctx: os._exit(9))]

vn = Virtnet(sys.argv[1], sys.argv[2], netns=sys.argv[3], plugins=[Crash()])
vn.create_network(sys.stdin.read())
"""


def test_a_start_killed_half_way_is_undone_by_the_next_process(world: World) -> None:
    state, run = world.run_dir.parent / "state", world.run_dir
    before = snapshot(world.host, run)
    killed = subprocess.run(
        [sys.executable, "-c", CRASHER, str(state), str(run), world.host.name],
        input=xml("crash", "vtbr-crash", "10.79.10", "10"),
        capture_output=True,
        text=True,
    )
    assert killed.returncode == 9, killed.stderr
    assert "vtbr-crash" in world.host.links()  # left behind, with its dnsmasq and rules
    assert snapshot(world.host, run) != before
    from virtnet.api import Virtnet

    with Virtnet(state, run, netns=world.host.name):  # a new process would do the same
        pass
    assert snapshot(world.host, run) == before
