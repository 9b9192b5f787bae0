"""Retired links: an unplug or a network stop takes a link out of service at once and deletes it
in the background (``virtnet.services.reaper``). What must hold the moment the call returns:
the guest's frames go nowhere, the name is free, and nothing is left once the process is gone,
even when it was killed before the deletion."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtnet.backend import Host
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.ownership import Owner
from virtnet.services import Services
from virtnet.services.netlink import RETIRED_GROUP
from virtnet.testing import Namespace
from virtnet.testing.fixtures import needs_root
from virtnet.testing.world import World

pytestmark = [needs_root, pytest.mark.root]

NAT = """<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}' stp='off'/>
  <ip address='10.79.{n}.1' prefix='24'><dhcp><range start='10.79.{n}.100'
  end='10.79.{n}.150'/></dhcp></ip></network>"""
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000
ETH_P_ALL, PROBE_TYPE = 0x0003, 0x88B5  # IEEE local experimental ethertype


def open_tap(name: str) -> int:
    """What QEMU does with the tap virtnet made: attach to it by name."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def sniffer(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def heard(sock: socket.socket, payload: bytes, wait: float = 0.5) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if payload in sock.recv(2048):
                return True
        except BlockingIOError:
            time.sleep(0.01)
    return False


def send(fd: int, mac: str, payload: bytes) -> bool:
    """A broadcast frame from the guest; False if the kernel refused it outright."""
    frame = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) + struct.pack("!H", PROBE_TYPE)
    try:
        os.write(fd, frame + payload.ljust(46, b"\0"))
    except OSError as exc:
        assert exc.errno in (errno.EIO, errno.ENETDOWN, errno.EBADFD), exc
        return False
    return True


def link(ns: Namespace, name: str) -> dict[str, object] | None:
    shown = ns.ip("-d", "-j", "link", "show", "dev", name, check=False)
    return json.loads(shown.stdout)[0] if shown.returncode == 0 else None


def test_an_unplugged_tap_carries_no_frame_the_moment_unplug_returns(world: World) -> None:
    """The guest (QEMU) keeps its tap open after the unplug: what it sends reaches no one,
    though the link itself is deleted only later."""
    world.vn.create_network(NAT.format(name="ret", bridge="vtbr-ret", n=1))
    peer, _ = world.plug("ret", "peer")
    tap = world.vn.create_port(
        "ret",
        NetworkPort(
            network="ret",
            attachment=Attachment(AttachmentKind.TAP, "vrtap0", spoof_check=False),
        ),
    )
    assert tap.mac
    fd = world.host.call(lambda: open_tap("vrtap0"))
    ear = peer.call(lambda: sniffer("eth0"))
    try:
        assert send(fd, tap.mac, b"before unplug") and heard(ear, b"before unplug")
        world.vn.delete_port(tap.uuid or "")
        assert "vrtap0" not in world.host.links()
        send(fd, tap.mac, b"after unplug")
        assert not heard(ear, b"after unplug")
    finally:
        os.close(fd)
        ear.close()
    # the name is free at once: a new guest may take it
    again = world.vn.create_port(
        "ret", NetworkPort(network="ret", attachment=Attachment(AttachmentKind.TAP, "vrtap0"))
    )
    assert (link(world.host, "vrtap0") or {}).get("master") == "vtbr-ret"
    world.vn.delete_port(again.uuid or "")


@pytest.fixture
def root_links_untouched() -> Iterator[None]:
    """The tests below ask ``Services`` for its netlink from the test's own thread, in the
    root namespace: its sockets must still be made in the host's namespace (a socket made
    here would change the host's real links by their index)."""

    def links() -> str:
        return subprocess.run(
            ["ip", "-d", "-j", "link", "show"], capture_output=True, text=True
        ).stdout

    before = links()
    yield
    assert links() == before


@pytest.fixture
def services(host_ns: Namespace, tmp_path: Path, root_links_untouched: None) -> Iterator[Services]:
    made = Services(Host(tmp_path / "state", tmp_path / "run", netns=host_ns.name))
    yield made
    made.close()


def test_a_retired_tap_is_down_detached_renamed_and_then_deleted(
    host_ns: Namespace, services: Services
) -> None:
    """Each promise of ``Netlink.retire``, checked before the reaper runs; then the reaper."""
    owner = Owner(str(uuid.uuid4())).label
    try:
        nl = services.netlink
        services.call(
            nl.create_bridge, "vrbr0", mac=None, mtu=None, stp=False, delay=0, label=owner
        )
        services.call(
            nl.create_tap, "vrtap1", master="vrbr0", mac=None, owner_uid=None, label=owner
        )
        services.call(nl.set_up, "vrtap1")
        services.call(nl.pin_mac, "vrtap1", "52:54:00:00:79:01")
        index = int((link(host_ns, "vrtap1") or {})["ifindex"])  # type: ignore[call-overload]
        assert "52:54:00:00:79:01" in host_ns.exec("bridge", "fdb", "show", "br", "vrbr0").stdout

        assert services.call(nl.retire, "vrtap1", owner)
        tomb = link(host_ns, f"vnr{index:x}")
        assert tomb is not None and "vrtap1" not in host_ns.links()
        assert "UP" not in tomb["flags"] and "master" not in tomb  # type: ignore[operator]
        assert tomb["group"] == str(RETIRED_GROUP) or tomb["group"] == RETIRED_GROUP
        assert "52:54:00:00:79:01" not in host_ns.exec("bridge", "fdb", "show").stdout

        services.reaper.reap(RETIRED_GROUP, checked=True)
        assert services.reaper.settle()
        assert link(host_ns, f"vnr{index:x}") is None
        assert not services.call(nl.retire, "vrtap1", owner)  # gone: nothing to do
    finally:
        services.call(nl.delete, "vrbr0", owner)


def test_a_name_clash_on_retiring_deletes_the_link_and_spares_the_namesake(
    host_ns: Namespace, services: Services
) -> None:
    owner = Owner(str(uuid.uuid4())).label
    nl = services.netlink
    services.call(nl.create_tap, "vrtap2", master=None, mac=None, owner_uid=None, label=owner)
    index = int((link(host_ns, "vrtap2") or {})["ifindex"])  # type: ignore[call-overload]
    host_ns.ip("link", "add", f"vnr{index:x}", "type", "bridge")  # someone else's
    assert services.call(nl.retire, "vrtap2", owner)
    assert "vrtap2" not in host_ns.links()
    assert (link(host_ns, f"vnr{index:x}") or {}).get("linkinfo", {}).get(  # type: ignore[union-attr]
        "info_kind"
    ) == "bridge"


def test_a_network_stopped_and_started_again_at_once_gets_its_names_back(world: World) -> None:
    """The old bridge and its ports are still being deleted while the new ones are made."""
    xml = NAT.format(name="again", bridge="vtbr-again", n=2)
    world.vn.define_network(xml)
    for _ in range(3):
        world.vn.start_network("again")
        for i in range(3):
            world.vn.create_port(
                "again",
                NetworkPort(
                    network="again", attachment=Attachment(AttachmentKind.TAP, f"vrtap-a{i}")
                ),
            )
        world.vn.destroy_network("again")
        # the bridge's name is free at once; its ports keep theirs until the reaper has
        # deleted them (the next plug of the same name waits for it: the loop's next round)
        assert "vtbr-again" not in world.host.links()
    world.vn.services.reaper.settle()
    assert not [n for n in world.host.links() if n.startswith("vnr")]


def test_links_retired_by_a_process_killed_before_deleting_them_are_collected(
    virtnet_cli, host_ns: Namespace
) -> None:  # type: ignore[no-untyped-def]
    """A process dies between retiring links and deleting them: ``virtnet gc`` finds them
    (labelled, no record owns them) and a clean exit of the CLI leaves none."""
    virtnet_cli(
        "net-create", "-", input=NAT.format(name="gone", bridge="vtbr-gone", n=3), check=True
    )
    made = virtnet_cli("net-port-create", "gone", "--json", check=True)
    uuid = json.loads(made.stdout)["uuid"]
    script = f"""
import os
from virtnet.api import Virtnet
from virtnet.services.reaper import Reaper
Reaper.reap = lambda self, *a, **k: None  # the process dies before its reaper runs
vn = Virtnet({str(virtnet_cli.state_dir)!r}, {str(virtnet_cli.run_dir)!r}, netns={host_ns.name!r})
vn.delete_port({uuid!r})
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    retired = [n for n in host_ns.links() if n.startswith("vnr")]
    assert len(retired) == 1
    found = json.loads(virtnet_cli("gc", "--dry-run", "--json").stdout)["orphans"]
    assert retired[0] in {o["name"] for o in found}
    assert virtnet_cli("gc").returncode == 0
    assert not [n for n in host_ns.links() if n.startswith("vnr")]
    # a whole CLI process: what it retired is deleted before it exits
    virtnet_cli("net-port-create", "gone", check=True)
    virtnet_cli("net-destroy", "gone", check=True)
    assert not [n for n in host_ns.links() if n.startswith(("vnr", "vtbr", "vnet"))]


def test_a_veth_unplug_frees_the_guests_name_at_once_and_spares_a_guests_namesake(
    world: World,
) -> None:
    """A container runtime removes eth0 and adds it again right away: the guest's end retires
    too (down, renamed in the guest's namespace), and a link the guest made under the
    retired name stays (the pair is then deleted before unplug returns)."""
    world.vn.create_network(NAT.format(name="vret", bridge="vtbr-vret", n=4))
    guest, port = world.plug("vret", "g")
    assert "eth0" in guest.links()
    world.vn.delete_port(port.uuid or "")
    assert "eth0" not in guest.links() and port.attachment.ifname not in world.host.links()
    again = world.vn.create_port(
        "vret",
        NetworkPort(network="vret", attachment=Attachment(AttachmentKind.VETH, netns=guest.name)),
    )
    assert "eth0" in guest.links()
    peer = int((link(guest, "eth0") or {})["ifindex"])  # type: ignore[call-overload]
    guest.ip("link", "add", f"vnr{peer:x}", "type", "bridge")  # the guest's own, same name
    world.vn.delete_port(again.uuid or "")
    assert "eth0" not in guest.links()
    assert (link(guest, f"vnr{peer:x}") or {}).get("linkinfo", {}).get("info_kind") == "bridge"  # type: ignore[union-attr]
    world.vn.settle()
    assert not [
        n for n in guest.links() | world.host.links() if n.startswith("vnr") and n != f"vnr{peer:x}"
    ]


def test_a_retired_link_is_collected_even_when_its_network_runs_again(
    virtnet_cli, host_ns: Namespace
) -> None:  # type: ignore[no-untyped-def]
    """A process dies between retiring a network's links (its stop) and deleting them, and
    the network is started again at once: the retired bridge's label names a running network
    (same uuid), yet it only waits for deletion. gc collects it, the new bridge stays (found
    by virtnetd's kill -9 test once the compiled client made its clients fast enough)."""
    xml = NAT.format(name="back", bridge="vtbr-back", n=4)
    virtnet_cli("net-define", "-", input=xml, check=True)
    virtnet_cli("net-start", "back", check=True)
    virtnet_cli("net-port-create", "back", check=True)
    script = f"""
import os
from virtnet.api import Virtnet
from virtnet.services.reaper import Reaper
Reaper.reap = lambda self, *a, **k: None  # the process dies before its reaper runs
vn = Virtnet({str(virtnet_cli.state_dir)!r}, {str(virtnet_cli.run_dir)!r}, netns={host_ns.name!r})
vn.destroy_network("back")
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    virtnet_cli("net-start", "back", check=True)
    retired = {n for n in host_ns.links() if n.startswith("vnr")}
    assert retired  # the old bridge (and its port), renamed
    found = json.loads(virtnet_cli("gc", "--dry-run", "--json").stdout)["orphans"]
    assert retired <= {o["name"] for o in found}
    assert "vtbr-back" not in {o["name"] for o in found}
    assert virtnet_cli("gc").returncode == 0
    assert not [n for n in host_ns.links() if n.startswith("vnr")]
    assert "vtbr-back" in host_ns.links()
    assert virtnet_cli("net-check", "back").returncode == 0
    virtnet_cli("net-destroy", "back", check=True)
    virtnet_cli("net-undefine", "back", check=True)


def test_stopped_networks_piled_up_cost_one_dump_and_a_foreign_link_stays(
    host_ns: Namespace, services: Services
) -> None:
    """Three networks' bridges and ports, retired while the reaper is busy, are checked with
    one dump of the links and deleted a group per request (a bridge's deletion holds the
    kernel's lock ~16 ms however many go together: one request for all made every
    foreground request wait for all); a link someone else put in one of the port groups
    leaves it and stays, as with a single group."""
    from virtnet.services.netlink import PORT_GROUP_BASE, Reap, delete_groups

    nl = services.netlink
    owners = [Owner(str(uuid.uuid4())).label for _ in range(3)]
    groups: dict[int, Reap] = {}
    for n, owner in enumerate(owners):
        bridge = f"vrgb{n}"
        services.call(nl.create_bridge, bridge, mac=None, mtu=None, stp=False, delay=0,
                      label=owner)  # fmt: skip
        index = int((link(host_ns, bridge) or {})["ifindex"])  # type: ignore[call-overload]
        services.call(nl.set_group, bridge, PORT_GROUP_BASE + index)  # as a start does
        for p in range(2):
            services.call(nl.create_tap, f"vrgt{n}{p}", master=bridge, mac=None, owner_uid=None,
                          label=owner, group=PORT_GROUP_BASE + index)  # fmt: skip
        group = services.call(nl.retire_bridge, bridge, owner)
        assert group == PORT_GROUP_BASE + index
        groups[group] = Reap(owner)
    foreign_group = next(iter(groups))
    host_ns.ip("link", "add", "vrgforeign", "type", "bridge")
    host_ns.ip("link", "set", "vrgforeign", "group", str(foreign_group))
    deletions: list[int] = []
    dumps: list[int] = []
    kind = services.netlink.rtnl.__class__
    real, real_links = kind.delete_group, kind.links

    def counted(self, group: int) -> None:  # type: ignore[no-untyped-def]
        deletions.append(group)
        real(self, group)

    def dumped(self, groups=None):  # type: ignore[no-untyped-def]
        dumps.append(1)
        return real_links(self, groups)

    kind.delete_group, kind.links = counted, dumped  # type: ignore[method-assign]
    try:
        services.call(delete_groups, services.netlink.rtnl, groups)
    finally:
        kind.delete_group, kind.links = real, real_links  # type: ignore[method-assign]
    assert deletions == list(groups) and len(dumps) == 1
    left = host_ns.links()
    assert not [n for n in left if n.startswith(("vrgb", "vrgt", "vnr"))], left
    assert "vrgforeign" in left
    assert str((link(host_ns, "vrgforeign") or {}).get("group")) in ("0", "default")


def test_a_big_group_goes_a_chunk_per_request_and_foreign_links_stay(
    host_ns: Namespace, services: Services
) -> None:
    """A stopped network's bridge with more ports than a deletion request should take is
    deleted a chunk at a time, bridge last: the kernel holds its lock while a request's
    links go (a bridge with 1,000 ports held it 367 ms: every plug and start of the host
    waited), so no request may carry more than ``REAP_CHUNK`` ports. Links that are not
    virtnet's stay: one someone put in the port group, one someone put in the group the
    chunks go through; a labelled link a killed reaper left there goes."""
    from virtnet.services.netlink import (
        PORT_GROUP_BASE,
        REAP_CHUNK,
        REAPING_GROUP,
        Reap,
        delete_groups,
    )

    nl, rtnl = services.netlink, services.netlink.rtnl
    owner = Owner(str(uuid.uuid4())).label
    services.call(nl.create_bridge, "vrcb", mac=None, mtu=None, stp=False, delay=0,
                  label=owner)  # fmt: skip
    group = PORT_GROUP_BASE + int((link(host_ns, "vrcb") or {})["ifindex"])  # type: ignore[call-overload]
    services.call(nl.set_group, "vrcb", group)
    ports = 2 * REAP_CHUNK + 10
    for p in range(ports):
        services.call(nl.create_tap, f"vrct{p}", master="vrcb", mac=None, owner_uid=None,
                      label=owner, group=group)  # fmt: skip
    services.call(nl.create_tap, "vrcleft", master=None, mac=None, owner_uid=None,
                  label=owner, group=REAPING_GROUP)  # fmt: skip
    for name, into in (("vrcforeign", group), ("vrcforeign2", REAPING_GROUP)):
        host_ns.ip("link", "add", name, "type", "bridge")
        host_ns.ip("link", "set", name, "group", str(into))
    assert services.call(nl.retire_bridge, "vrcb", owner) == group
    sizes: list[tuple[int, int]] = []
    kind = rtnl.__class__
    real = kind.delete_group

    def counted(self, deleted: int) -> None:  # type: ignore[no-untyped-def]
        sizes.append((deleted, len(real_links(self, {deleted}))))
        real(self, deleted)

    real_links = kind.links
    kind.delete_group = counted  # type: ignore[method-assign]
    try:
        services.call(delete_groups, rtnl, {group: Reap(owner)})
    finally:
        kind.delete_group = real  # type: ignore[method-assign]
    assert sizes[0] == (REAPING_GROUP, 1)  # the killed reaper's leftover, the foreign one out
    chunks = [n for g, n in sizes[1:] if g == REAPING_GROUP]
    assert chunks == [REAP_CHUNK, ports + 1 - 2 * REAP_CHUNK]
    assert sizes[-1] == (group, REAP_CHUNK)  # the last chunk, with the bridge
    left = host_ns.links()
    assert not [n for n in left if n.startswith(("vrct", "vnr")) or n == "vrcleft"], left
    for name in ("vrcforeign", "vrcforeign2"):
        assert name in left
        assert str((link(host_ns, name) or {}).get("group")) in ("0", "default")


def test_a_burst_of_retired_links_goes_a_chunk_per_request(
    host_ns: Namespace, services: Services
) -> None:
    """Unplugs retire their links into one group without a dump (each checked its label);
    the reaper counts them, and a burst of more than a chunk is dumped and deleted a chunk
    at a time like a stopped network's ports."""
    from virtnet.services.netlink import REAP_CHUNK, REAPING_GROUP, Reap, delete_groups

    nl, rtnl = services.netlink, services.netlink.rtnl
    owner = Owner(str(uuid.uuid4())).label
    burst = REAP_CHUNK + 6
    for p in range(burst):
        services.call(nl.create_tap, f"vrbt{p}", master=None, mac=None, owner_uid=None,
                      label=owner)  # fmt: skip
        assert services.call(nl.retire, f"vrbt{p}", owner)
    sizes: list[tuple[int, int]] = []
    kind = rtnl.__class__
    real, real_links = kind.delete_group, kind.links

    def counted(self, deleted: int) -> None:  # type: ignore[no-untyped-def]
        sizes.append((deleted, len(real_links(self, {deleted}))))
        real(self, deleted)

    kind.delete_group = counted  # type: ignore[method-assign]
    try:
        services.call(delete_groups, rtnl, {RETIRED_GROUP: Reap(checked=True, links=burst)})
    finally:
        kind.delete_group = real  # type: ignore[method-assign]
    assert sizes == [(REAPING_GROUP, 6), (RETIRED_GROUP, REAP_CHUNK)]
    assert not [n for n in host_ns.links() if n.startswith(("vrbt", "vnr"))]
    assert Reap(checked=True, links=REAP_CHUNK).needs_dump() is False  # a few: no dump
