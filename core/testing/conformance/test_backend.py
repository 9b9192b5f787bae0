"""The backend contract, checked on a real kernel against any installed backend.

Each check builds a throw-away world (a host namespace with an uplink to an outside peer),
defines networks with the backend named explicitly, and compares the host with a snapshot.
Checks that take ``mode`` run once per forward mode the backend claims; what a backend does
not claim (an attachment kind, anti-spoofing) is skipped, saying so.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from virtnet.apply import FAULT_ENV
from virtnet.backend import FEATURE_ANTI_SPOOFING, FEATURE_PORT_ISOLATION
from virtnet.errors import VirtnetError
from virtnet.model.network import ForwardMode
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.plugins import api_problem
from virtnet.testing import Namespace, can_ping, can_tcp, dhcp_lease, snapshot
from virtnet.testing.conformance.plugin import Setup
from virtnet.testing.snapshot import link_details
from virtnet.testing.tapguest import attach
from virtnet.testing.world import UPLINK_HOST, UPLINK_PEER

pytest_plugins = ["virtnet.testing.fixtures"]


def snap(s: Setup) -> dict[str, Any]:
    return snapshot(s.world.host, s.world.run_dir)


def plug(
    s: Setup, network: str, guest: Namespace, isolated: bool | None = None, **extra: Any
) -> NetworkPort:
    attachment = Attachment(kind=s.profile.guest_kind, netns=guest.name, **extra)
    port = NetworkPort(network=network, attachment=attachment, isolated=isolated)
    return s.world.vn.create_port(network, port)


def guest_of(
    s: Setup, network: str, role: str, kind: AttachmentKind, isolated: bool | None = None
) -> tuple[Namespace, NetworkPort]:
    """A guest on a port of ``kind``: a container's link moved into its namespace, or a VM's
    tap or macvtap wired to a namespace by :mod:`virtnet.testing.tapguest`."""
    guest = s.world.guest(role)
    in_guest = kind in (AttachmentKind.VETH, AttachmentKind.MACVLAN)
    attachment = Attachment(kind=kind, netns=guest.name if in_guest else None)
    port = s.world.vn.create_port(
        network, NetworkPort(network=network, attachment=attachment, isolated=isolated)
    )
    if not in_guest:
        device = port.attachment.device if kind is AttachmentKind.MACVTAP else None
        attach(s.world.lab, s.world.host, device or str(port.attachment.ifname), guest,
               str(port.mac))  # fmt: skip
    return guest, port


def fits(s: Setup, kind: AttachmentKind) -> None:
    """Skip a kind the mode's network cannot take (a veth on a direct network)."""
    direct = s.profile.guest_kind is AttachmentKind.MACVLAN
    if direct != (kind in (AttachmentKind.MACVLAN, AttachmentKind.MACVTAP)):
        pytest.skip(f"{kind.value} ports do not attach to {s.profile.mode.value} networks here")


def address(s: Setup, guest: Namespace, index: int) -> str:
    """The guest's address: from DHCP where the network serves it, else a static one."""
    if s.profile.subnet:
        leased = dhcp_lease(guest)
        assert leased, f"guest {guest.name} got no DHCP lease"
        return leased.split("/")[0]
    static = s.profile.static[index]
    guest.ip("addr", "add", f"{static}/24", "dev", "eth0")
    return static


def cli(s: Setup, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """virtnet as a separate process on the world's host (a crash kills only it)."""
    import os

    env = {**os.environ, "VIRTNET_DAEMON": "never"}
    if fault:
        env[FAULT_ENV] = fault
    vn = s.world.vn
    return subprocess.run(
        [sys.executable, "-m", "virtnet.cli", "--netns", s.world.host.name,
         "--state-dir", str(vn.host.state_dir), "--run-dir", str(vn.host.run_dir), *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def next_command(s: Setup) -> None:
    """What any next virtnet command does first: undo what a killed one left half-built
    (a new API object on the same host, as a new process would make)."""
    from virtnet.api import Virtnet

    host = s.world.vn.host
    Virtnet(host.state_dir, host.run_dir, host.netns).close()


# --- the description -------------------------------------------------------------------------
def test_describe_says_who_and_what(backend: str, info: Any) -> None:
    assert info.name == backend
    assert info.version and info.summary
    assert api_problem(info.api_version) is None
    assert info.forward_modes, "a backend serves at least one forward mode"
    assert info.attachments, "a backend makes at least one attachment kind"


# --- planning and the undo journal -----------------------------------------------------------
def test_planning_does_not_touch_the_host(setup: Setup) -> None:
    before = snap(setup)
    name = setup.define()
    assert setup.world.vn.plan_start(name).plan.steps
    assert snap(setup) == before


def test_a_fault_at_each_start_step_rolls_back(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = setup.define()
    before = snap(setup)
    steps = len(setup.world.vn.plan_start(name).plan)
    for index in range(steps):
        monkeypatch.setenv(FAULT_ENV, f"network:raise:{index}")
        with pytest.raises(VirtnetError, match="injected fault"):
            setup.world.vn.start_network(name)
        assert snap(setup) == before, f"a fault before start step {index} left something"
    monkeypatch.delenv(FAULT_ENV)
    setup.world.vn.start_network(name)
    setup.world.vn.destroy_network(name)
    assert snap(setup) == before


def test_a_fault_at_each_plug_step_rolls_back(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = setup.define()
    setup.world.vn.start_network(name)
    before = snap(setup)
    guest = setup.world.guest("g")
    for index in range(64):
        monkeypatch.setenv(FAULT_ENV, f"port:raise:{index}")
        try:
            port = plug(setup, name, guest)
        except VirtnetError as exc:
            assert "injected fault" in str(exc), exc
            assert snap(setup) == before, f"a fault before plug step {index} left something"
            continue
        break  # past the last step: the plug went through
    monkeypatch.delenv(FAULT_ENV)
    setup.world.vn.delete_port(port.uuid or "")
    assert snap(setup) == before


def test_a_kill_at_each_start_step_is_undone_by_the_next_command(setup: Setup) -> None:
    name = setup.define()
    before = snap(setup)
    for index in range(64):
        done = cli(setup, "net-start", name, fault=f"network:kill:{index}")
        if done.returncode == 0:
            break
        assert done.returncode == -9, done.stderr
        next_command(setup)
        assert snap(setup) == before, f"a kill before start step {index} left something"
    assert cli(setup, "net-destroy", name).returncode == 0
    assert snap(setup) == before


def test_a_kill_at_each_plug_step_is_undone_by_the_next_command(setup: Setup) -> None:
    name = setup.define()
    setup.world.vn.start_network(name)
    before = snap(setup)
    guest = setup.world.guest("g")
    for index in range(64):
        done = cli(setup, "net-port-create", name, "--netns", guest.name,
                   fault=f"port:kill:{index}")  # fmt: skip
        if done.returncode == 0:
            break
        assert done.returncode == -9, done.stderr
        next_command(setup)
        assert snap(setup) == before, f"a kill before plug step {index} left something"
    assert cli(setup, "net-port-delete", done.stdout.strip()).returncode == 0
    assert snap(setup) == before


# --- drift -----------------------------------------------------------------------------------
def test_drift_reports_a_deleted_port_link_and_bridge(setup: Setup) -> None:
    name = setup.define()
    vn = setup.world.vn
    vn.start_network(name)
    port = plug(setup, name, setup.world.guest("g"))
    assert vn.check_network(name) == []
    link = port.attachment.ifname
    if link:
        setup.world.host.ip("link", "del", link)
        found = vn.check_network(name)
        assert any(link in line for line in found), found
    bridge = owned_bridge(setup, name)
    if bridge:
        setup.world.host.ip("link", "del", bridge)
        found = vn.check_network(name)
        assert any(bridge in line for line in found), found
    if not (link or bridge):
        pytest.skip("nothing of the host's to delete: the port lives in the guest only")


def owned_bridge(setup: Setup, name: str) -> str | None:
    """The bridge the running network made (none: a bridge it only uses, or no bridge)."""
    status = setup.world.vn.network_info(name)["status"]
    bridge = status.get("bridge")
    return str(bridge) if bridge and status.get("owned", setup.profile.bridge) else None


# --- traffic ---------------------------------------------------------------------------------
def test_guests_get_addresses_and_talk(setup: Setup, kind: AttachmentKind) -> None:
    fits(setup, kind)
    if setup.profile.mode is ForwardMode.PASSTHROUGH:
        pytest.skip("passthrough: one guest per device")
    name = setup.define()
    setup.world.vn.start_network(name)
    a, _ = guest_of(setup, name, "a", kind)  # one of this kind, one of the usual kind
    b, _ = guest_of(setup, name, "b", setup.profile.guest_kind)
    address_a, address_b = address(setup, a, 0), address(setup, b, 1)
    if setup.profile.mode in (ForwardMode.PRIVATE, ForwardMode.VEPA):
        # private: never; vepa: only through an external switch that reflects frames back
        # (802.1Qbg), which the outside peer here is not
        assert not can_ping(a, address_b), f"{setup.profile.mode.value}: guests reached each other"
        return
    assert can_ping(a, address_b)
    assert can_tcp(a, b, address_b) == address_a


def test_the_forward_mode_means_what_libvirt_says(setup: Setup, kind: AttachmentKind) -> None:
    fits(setup, kind)
    mode = setup.profile.mode
    if mode not in (ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.ISOLATED):
        pytest.skip(f"{mode.value}: no reach beyond the network to check here")
    name = setup.define()
    setup.world.vn.start_network(name)
    guest, _ = guest_of(setup, name, "a", kind)
    mine = address(setup, guest, 0)
    if mode is ForwardMode.ISOLATED:
        assert not can_ping(guest, UPLINK_PEER), "an isolated network must not reach out"
        return
    if mode is ForwardMode.ROUTE:  # the upstream router knows the way back
        setup.world.outside.ip("route", "add", f"{setup.profile.subnet}.0/24", "via", UPLINK_HOST)
    seen = can_tcp(guest, setup.world.outside, UPLINK_PEER)
    assert seen == (UPLINK_HOST if mode is ForwardMode.NAT else mine)


def test_a_guest_cannot_send_from_another_address(setup: Setup, kind: AttachmentKind) -> None:
    fits(setup, kind)
    if FEATURE_ANTI_SPOOFING not in setup.info.features:
        pytest.skip("the backend does not claim anti-spoofing")
    if not setup.profile.subnet:
        pytest.skip(f"{setup.profile.mode.value}: no address plan to guard")
    name = setup.define()
    setup.world.vn.start_network(name)
    guest, _ = guest_of(setup, name, "a", kind)
    mine = address(setup, guest, 0)
    gateway = f"{setup.profile.subnet}.1"
    assert can_ping(guest, gateway)
    guest.ip("addr", "flush", "dev", "eth0")
    guest.ip("addr", "add", f"{setup.profile.subnet}.77/24", "dev", "eth0")
    assert not can_ping(guest, gateway), f"a guest leased {mine} sent as .77 and got through"


def test_isolated_ports_do_not_reach_each_other(setup: Setup) -> None:
    if FEATURE_PORT_ISOLATION not in setup.info.features:
        pytest.skip("the backend does not claim port isolation")
    if not setup.profile.subnet:
        pytest.skip(f"{setup.profile.mode.value}: no address plan to check it with")
    name = setup.define()
    setup.world.vn.start_network(name)
    a, b = setup.world.guest("a"), setup.world.guest("b")
    plug(setup, name, a, isolated=True)
    plug(setup, name, b, isolated=True)
    address(setup, a, 0)
    address_b = address(setup, b, 1)
    assert can_ping(a, f"{setup.profile.subnet}.1"), "an isolated port still reaches the host"
    assert not can_ping(a, address_b), "two isolated ports reached each other"


# --- teardown and ownership ------------------------------------------------------------------
def test_destroy_leaves_the_host_as_it_was(setup: Setup) -> None:
    before = snap(setup)
    name = setup.define()
    vn = setup.world.vn
    vn.start_network(name)
    first = plug(setup, name, setup.world.guest("a"))
    if setup.profile.mode is not ForwardMode.PASSTHROUGH:
        plug(setup, name, setup.world.guest("b"))
    if AttachmentKind.TAP in setup.info.attachments:
        vn.create_port(name, NetworkPort(network=name, attachment=Attachment(AttachmentKind.TAP)))
    vn.delete_port(first.uuid or "")
    vn.destroy_network(name)
    assert snap(setup) == before


def test_a_namesake_survives_a_failed_start_and_plug(setup: Setup) -> None:
    host, vn = setup.world.host, setup.world.vn
    name = setup.define()
    bridge = vn.plan_start(name).plan.info.get("bridge") if setup.profile.bridge else None
    if bridge:
        host.ip("link", "add", bridge, "type", "bridge")
        host.ip("link", "set", bridge, "alias", "someone else's")
        before = link_details(host, bridge)
        with pytest.raises(VirtnetError):
            vn.start_network(name)
        assert link_details(host, bridge) == before
        host.ip("link", "del", bridge)
    vn.start_network(name)
    guest = setup.world.guest("g")
    port = NetworkPort(network=name, attachment=Attachment(setup.profile.guest_kind,
                                                           netns=guest.name))  # fmt: skip
    vn.plan_port(name, port)  # the names the plug would use
    if port.attachment.ifname:
        ns, ifname = host, port.attachment.ifname
    else:
        ns, ifname = guest, port.attachment.guest_ifname or "eth0"
    ns.ip("link", "add", ifname, "type", "veth", "peer", "name", "namesake0p")
    before = link_details(ns, ifname)
    with pytest.raises(VirtnetError):
        vn.create_port(name, port)
    assert link_details(ns, ifname) == before
