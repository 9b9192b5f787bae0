"""virtnet doctor against the real thing: Docker's and firewalld's firewalls, started inside
the test's host namespace, break a NAT network's guests; the doctor names them, and its fix
(their own tools: DOCKER-USER, a firewalld zone) brings the guests back."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from virtnet.testing import can_ping, dhcp_lease
from virtnet.testing.fixtures import needs_root
from virtnet.testing.foreign import Docker, Firewalld
from virtnet.testing.world import UPLINK_PEER, World

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]

NAT = """<network><name>doc</name><forward mode='nat'/><bridge name='vtbr-doc' stp='off'/>
  <ip address='10.81.0.1' prefix='24'><dhcp><range start='10.81.0.100' end='10.81.0.150'/>
  </dhcp></ip></network>"""


def doctor(
    world: World, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    state = world.run_dir.parent / "state"
    return subprocess.run(
        [sys.executable, "-m", "virtnet.cli", "--netns", world.host.name, "--state-dir",
         str(state), "--run-dir", str(world.run_dir), "doctor", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


@pytest.fixture
def docker(world: World) -> Iterator[Docker]:
    if not Docker.available():
        pytest.skip("docker.io is not installed")
    made = Docker(world.host)
    try:
        yield made.start()
    finally:
        made.stop()


@pytest.fixture
def firewalld(world: World) -> Iterator[Firewalld]:
    made = Firewalld(world.host)
    if not made.available():
        made.stop()
        pytest.skip("firewalld is not installed, or the machine runs its own")
    try:
        yield made.start()
    finally:
        made.stop()


def test_doctor_finds_dockers_forward_drop_and_its_fix_restores_nat(
    world: World, docker: Docker
) -> None:
    world.vn.create_network(NAT)
    guest, _ = world.plug("doc", "g")
    assert dhcp_lease(guest)
    assert not can_ping(guest, UPLINK_PEER, wait=0.5)  # Docker's FORWARD policy DROP
    found = doctor(world)
    assert found.returncode == 1 and "docker's chain ip filter FORWARD" in found.stdout
    fixed = doctor(world, "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "DOCKER-USER accepts traffic in and out of vtbr-doc" in fixed.stdout
    assert can_ping(guest, UPLINK_PEER)
    assert doctor(world).returncode == 0
    rules = world.host.exec("iptables", "-S", "DOCKER-USER").stdout
    assert "-i vtbr-doc -j ACCEPT" in rules and "-o vtbr-doc -j ACCEPT" in rules


def test_doctor_finds_firewalld_and_its_zone_fix_restores_dhcp_and_nat(
    world: World, firewalld: Firewalld
) -> None:
    world.vn.create_network(NAT)
    guest, _ = world.plug("doc", "g")
    assert dhcp_lease(guest) is None  # firewalld's input chain rejects DHCP
    found = doctor(world, env=firewalld.env)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "firewalld's chain inet firewalld filter_INPUT" in found.stdout
    assert "firewalld's chain inet firewalld filter_FORWARD" in found.stdout
    fixed = doctor(world, "--fix", env=firewalld.env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "vtbr-doc" in firewalld.cmd("--zone=trusted", "--list-interfaces").stdout
    assert dhcp_lease(guest) and can_ping(guest, UPLINK_PEER)
    assert doctor(world, env=firewalld.env).returncode == 0


def test_net_start_warns_about_a_firewall_in_the_way(world: World, docker: Docker) -> None:
    state = world.run_dir.parent / "state"
    started = subprocess.run(
        [sys.executable, "-m", "virtnet.cli", "--netns", world.host.name, "--state-dir",
         str(state), "--run-dir", str(world.run_dir), "net-create", "-"],
        input=NAT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert started.stderr.startswith("warning: docker's chain ip filter FORWARD")


ZONED = NAT.replace("stp='off'/>", "stp='off' zone='trusted'/>")


def test_a_bridge_zone_puts_the_network_in_firewalld_while_it_runs(
    world: World, firewalld: Firewalld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", firewalld.bus)  # firewall-cmd's bus
    world.vn.create_network(ZONED)
    assert "vtbr-doc" in firewalld.cmd("--zone=trusted", "--list-interfaces").stdout
    guest, _ = world.plug("doc", "g")
    assert dhcp_lease(guest) and can_ping(guest, UPLINK_PEER)
    world.vn.destroy_network("doc")
    assert "vtbr-doc" not in firewalld.cmd("--zone=trusted", "--list-interfaces").stdout


def test_a_bridge_zone_without_firewalld_is_refused_and_nothing_stays(world: World) -> None:
    from virtnet.errors import Unsupported

    before = world.host.links()
    with pytest.raises(Unsupported, match="firewalld is not running"):
        world.vn.create_network(ZONED)
    assert world.host.links() == before and world.vn.list_networks(inactive=False) == []
