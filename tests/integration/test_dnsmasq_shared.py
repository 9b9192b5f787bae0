"""Networks sharing a dnsmasq (``VIRTNET_DNSMASQ_SHARED``), asked by real DHCP clients: each
guest leases from its own network's range, joins and leaves keep everyone's leases, a killed
shared dnsmasq is every member's drift and comes back, and no guest reaches another network's
range through the shared process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtnet.errors import OperationFailed, Unsupported
from virtnet.pids import running
from virtnet.services.dnsmasq import Dnsmasq
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.dnsmasq_group import DnsmasqGroup
from virtnet.testing import Lab, Namespace, dhcp_lease, frames
from virtnet.testing.daemon import Daemon
from virtnet.testing.fixtures import needs_root, run_dir_for_test
from virtnet.testing.world import World, make_world

pytestmark = [needs_root, pytest.mark.root]

XML = """<network><name>{name}</name><forward mode='nat'/><bridge name='vtbr-{name}' stp='off'/>
  {extra}<ip address='10.91.{i}.1' prefix='24'><dhcp>
  <range start='10.91.{i}.100' end='10.91.{i}.150'/></dhcp></ip></network>"""


def xml(i: int, extra: str = "") -> str:
    return XML.format(name=f"sh{i}", i=i, extra=extra)


@pytest.fixture
def shared(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("VIRTNET_DNSMASQ_SHARED", "3")
    with make_world(lab, run_dir_for_test()) as made:
        yield made


def servers(world: World) -> dict[int, str]:
    """The running dnsmasqs of the host's networks (their pid files, checked against /proc):
    pid -> configuration."""
    found = {}
    for pidfile in [*world.run_dir.glob("dnsmasq/*/dnsmasq.pid"),
                    *world.run_dir.glob("dnsmasq-shared/g*/dnsmasq.pid")]:  # fmt: skip
        try:
            pid = int(pidfile.read_text())
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        conf = f"--conf-file={pidfile.with_name('dnsmasq.conf')}"
        if running(pid) and conf in args and pid in world.host.pids():
            found[pid] = conf
    return found


def no_dnsmasq_left(world: World) -> bool:
    """No dnsmasq runs in the host's namespace (a stopped one's lease helper exits a moment
    after it: waited for, up to 2 s)."""
    deadline = time.monotonic() + 2
    while True:
        left = [pid for pid in world.host.pids() if running(pid) and _comm(pid) == "dnsmasq"]
        if not left or time.monotonic() > deadline:
            return not left
        time.sleep(0.05)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def member(world: World, name: str) -> DnsmasqFiles:
    active = world.vn.store.active_network(name)
    assert active is not None
    return DnsmasqFiles.from_dict(active.info["dnsmasq"])  # type: ignore[arg-type]


def renew(guest: Namespace, mac: str, lease: str, server: str) -> None:
    """A DHCPREQUEST in RENEWING state: from the leased address, unicast to the server."""
    body = frames.dhcp_request(mac, 3, ciaddr=lease, xid=0x7E7E)
    udp = frames.ipv4_udp(lease, server, 68, 67, body)
    frames.send(guest, "eth0", [frames.ethernet("ff:ff:ff:ff:ff:ff", mac, 0x0800, udp)])
    time.sleep(0.3)


def test_networks_share_a_dnsmasq_and_each_guest_leases_from_its_own_range(
    shared: World,
) -> None:
    vn = shared.vn
    vn.create_network(xml(0))
    vn.create_network(xml(1))
    # DNS of its own: never shared (a shared dnsmasq would answer the others with it)
    vn.create_network(xml(2, "<dns><host ip='10.91.2.9'><hostname>nine</hostname></host></dns>"))
    assert member(shared, "sh0").directory == member(shared, "sh1").directory
    assert member(shared, "sh2").member is None
    assert len(servers(shared)) == 2

    g0, port0 = shared.plug("sh0", "g0")
    g1, _ = shared.plug("sh1", "g1")
    lease0, lease1 = dhcp_lease(g0), dhcp_lease(g1)
    assert lease0 and lease0.startswith("10.91.0.") and lease1 and lease1.startswith("10.91.1.")
    assert [x.ip for x in vn.dhcp_leases("sh0")] == [lease0]  # its own, not its group's
    assert [x.ip for x in vn.dhcp_leases("sh1")] == [lease1]

    vn.create_network(xml(3))  # joins: the group's dnsmasq restarts with it
    assert len(servers(shared)) == 2
    # both bind DHCP's port (the group's to no device): its own dnsmasq serves the network
    g2, port2 = shared.plug("sh2", "g2")
    lease2 = dhcp_lease(g2)
    assert lease2 and lease2.startswith("10.91.2.") and dhcp_lease(g2) == lease2
    assert [x.ip for x in vn.dhcp_leases("sh2")] == [lease2]
    # renewals are unicast to the server: each reaches the dnsmasq that serves its network
    time.sleep(1.1)  # (a renewal moves the expiry on by the seconds since)
    for name, guest, port, lease in (("sh0", g0, port0, lease0), ("sh2", g2, port2, lease2)):
        before = vn.dhcp_leases(name)[0].expiry
        renew(guest, port.mac or "", lease, lease.rsplit(".", 1)[0] + ".1")
        assert vn.dhcp_leases(name)[0].expiry > before, name
    assert [x.ip for x in vn.dhcp_leases("sh0")] == [lease0]  # read back from the lease file
    assert dhcp_lease(g0) == lease0  # and renewed as the same address
    vn.create_network(xml(4))  # the group is full (3): a second one
    assert member(shared, "sh4").directory != member(shared, "sh0").directory
    assert len(servers(shared)) == 3
    assert vn.check_network("sh0") == [] and vn.check_network("sh4") == []

    vn.destroy_network("sh0")  # leaves: the others go on
    g3, port3 = shared.plug("sh3", "g3")
    lease3 = dhcp_lease(g3) or ""
    assert lease3.startswith("10.91.3.")
    g4, port4 = shared.plug("sh4", "g4")
    lease4 = dhcp_lease(g4) or ""
    time.sleep(1.1)
    for name, guest, port, lease in (("sh3", g3, port3, lease3), ("sh4", g4, port4, lease4)):
        before = vn.dhcp_leases(name)[0].expiry  # (one group's renewal, then the other's)
        renew(guest, port.mac or "", lease, lease.rsplit(".", 1)[0] + ".1")
        assert vn.dhcp_leases(name)[0].expiry > before, name
    assert [x.ip for x in vn.dhcp_leases("sh1")] == [lease1]
    for name in ("sh1", "sh2", "sh3", "sh4"):
        vn.destroy_network(name)
    assert servers(shared) == {} and no_dnsmasq_left(shared)
    assert not list((shared.run_dir / "dnsmasq-shared").glob("g*/"))


def test_a_killed_shared_dnsmasq_is_every_members_drift_and_comes_back(shared: World) -> None:
    vn = shared.vn
    vn.create_network(xml(0))
    vn.create_network(xml(1))
    guest, _ = shared.plug("sh1", "g")
    leased = dhcp_lease(guest)
    (pid,) = servers(shared)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    for name in ("sh0", "sh1"):
        assert any("dnsmasq" in finding for finding in vn.check_network(name))
    vn.repair_network("sh0")  # one repair brings the group back, for both
    assert vn.check_network("sh1") == []
    assert dhcp_lease(guest) == leased

    # a member dnsmasq refuses: the group goes on as it was, without it
    files = member(shared, "sh0")
    stranger = DnsmasqFiles(files.directory, "00000000-0000-0000-0000-00000000beef")
    group = DnsmasqGroup(Dnsmasq())
    join = group.join, stranger, "no-such-option=1\n", "", files.script.read_text()
    with pytest.raises(OperationFailed, match="bad option"):
        vn.services.call(*join)  # (in the host's namespace)
    assert not stranger.fragment.exists()
    assert vn.check_network("sh0") == [] and vn.check_network("sh1") == []
    assert dhcp_lease(guest) == leased

    # one member's bridge gone (drift): the group still restarts for a newcomer
    shared.host.ip("link", "del", "vtbr-sh0")
    vn.create_network(xml(2))
    assert dhcp_lease(guest) == leased
    assert vn.check_network("sh1") == [] and vn.check_network("sh0") != []
    vn.repair_network("sh0")
    assert vn.check_network("sh0") == []
    newcomer, _ = shared.plug("sh0", "newcomer")
    assert (dhcp_lease(newcomer) or "").startswith("10.91.0.")


def test_a_relayed_request_cannot_take_another_networks_address(shared: World) -> None:
    vn = shared.vn
    vn.create_network(xml(0))
    vn.create_network(xml(1))
    # not even an unguarded guest: the rule is the network's firewall's, not a port guard's
    attacker, port = shared.plug("sh0", "relay", spoof_check=False)
    assert dhcp_lease(attacker)
    mac, client = port.mac or "", "52:54:00:66:91:01"  # a client "behind the relay"
    forged = []
    for kind, requested in ((1, None), (3, "10.91.1.120")):
        # (a request without a server id: an INIT-REBOOT, which an authoritative server acks)
        body = frames.dhcp_request(client, kind, requested=requested, giaddr="10.91.1.50",
                                   xid=0x4E1A + kind)  # fmt: skip
        for dst in ("255.255.255.255", "10.91.0.1"):
            udp = frames.ipv4_udp("10.91.0.50", dst, 67, 67, body)
            forged.append(frames.ethernet("ff:ff:ff:ff:ff:ff", mac, 0x0800, udp))
    frames.send(attacker, "eth0", forged)
    time.sleep(0.5)
    assert vn.dhcp_leases("sh1") == []
    leases = (member(shared, "sh0").leases).read_text()
    assert "10.91.1." not in leases


def test_a_live_update_reloads_the_group_or_says_why_it_cannot(shared: World) -> None:
    vn = shared.vn
    vn.create_network(xml(0))
    vn.create_network(xml(1))
    (before,) = servers(shared)
    host = "<host mac='52:54:00:91:00:07' ip='10.91.0.7'/>"
    vn.update_network("sh0", "add", "ip-dhcp-host", host, live=True)
    assert servers(shared) == {before: servers(shared)[before]}  # SIGHUP, no restart
    guest, _ = shared.plug("sh0", "reserved", mac="52:54:00:91:00:07")
    assert dhcp_lease(guest) == "10.91.0.7"
    with pytest.raises(Unsupported, match="shares its dnsmasq"):
        vn.update_network("sh1", "add", "dns-host",
                          "<host ip='10.91.1.9'><hostname>nine</hostname></host>",
                          live=True)  # fmt: skip
    assert vn.check_network("sh1") == []


def test_gc_takes_a_member_whose_network_is_gone_and_leaves_the_others(shared: World) -> None:
    vn = shared.vn
    vn.create_network(xml(0))
    vn.create_network(xml(1))
    files = member(shared, "sh0")
    # what a process killed between dropping a network's records and the group's restart
    # leaves: the part of a network no record knows
    ghost = DnsmasqFiles(files.directory, "00000000-0000-0000-0000-0000000000aa")
    ghost.fragment.write_text(files.fragment.read_text().replace("sh0", "sh9"))
    orphans, _ = vn.collect_garbage(dry_run=True)
    assert [(o.kind, o.name) for o in orphans] == [("dnsmasq-member", ghost.member)]
    (before,) = servers(shared)
    _, problems = vn.collect_garbage()
    assert problems == [] and not ghost.fragment.exists()
    assert list(servers(shared)) != [before]  # restarted without it
    assert vn.check_network("sh0") == [] and vn.check_network("sh1") == []
    assert vn.collect_garbage(dry_run=True) == ([], [])


def test_virtnetd_restarts_a_killed_shared_dnsmasq_and_ignores_its_planned_restarts(
    virtnetd: Daemon, lab: Lab
) -> None:
    """One pidfd per group: a join or leave restarts the group's dnsmasq without anyone's
    check; a killed one is repaired at once (checks 60 s apart: the pidfd said so)."""
    virtnetd.stop()
    virtnetd.env["VIRTNET_DNSMASQ_SHARED"] = "4"
    virtnetd.start("--interval", "60", "--full-interval", "600")
    for i in range(2):
        assert virtnetd.cli("net-create", "-", input=xml(i)).returncode == 0
    guest = lab.netns("guest")
    assert virtnetd.cli("net-port-create", "sh1", "--netns", guest.name).returncode == 0
    leased = dhcp_lease(guest)
    time.sleep(0.3)
    before = virtnetd.log_text()
    assert virtnetd.cli("net-create", "-", input=xml(2)).returncode == 0  # a join: a restart
    assert virtnetd.cli("net-destroy", "sh2").returncode == 0  # a leave: another
    time.sleep(0.5)
    assert "drifted" not in virtnetd.log_text()[len(before) :], virtnetd.log_text()
    [pidfile] = virtnetd.run_dir.glob("dnsmasq-shared/g0/dnsmasq.pid")
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    began = time.monotonic()
    while "repaired" not in virtnetd.log_text()[len(before) :]:
        assert time.monotonic() - began < 5, virtnetd.log_text()
        time.sleep(0.05)
    for name in ("sh0", "sh1"):
        assert virtnetd.cli("net-check", name).returncode == 0
    assert dhcp_lease(guest) == leased
