"""Ownership labels: a foreign object with the same name as one virtnet would make survives a
failed start or plug bit for bit, even when it appeared after the step's check (a race), and
the collector (``virtnet gc``) removes only labelled objects no record owns."""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from virtnet.apply import ApplyContext, Journal, apply_plan
from virtnet.backend import Host
from virtnet.errors import VirtnetError
from virtnet.model.network import Rate
from virtnet.ownership import Owner
from virtnet.plan import CallStep, Plan, Step
from virtnet.plugins import make_plugin_manager
from virtnet.services import Services
from virtnet.services.steps import (
    AddRoute,
    CreateBridge,
    CreateMacvlan,
    CreateMacvtap,
    CreateTap,
    CreateVeth,
    ShapeLink,
)
from virtnet.testing import Namespace
from virtnet.testing.fixtures import needs_root
from virtnet.testing.netns import Lab
from virtnet.testing.snapshot import link_details

pytestmark = [needs_root, pytest.mark.root]

OWNER = Owner(str(uuid.uuid4()), str(uuid.uuid4()))


def racy(step: Step) -> Step:
    """The same step with its check skipped: the object appeared between check and apply."""
    cls = type(step)
    subclass = type(f"Racy{cls.__name__}", (cls,), {"check": lambda self, ctx: None})
    fields = {f.name: getattr(step, f.name) for f in dataclasses.fields(step)}  # type: ignore[arg-type]
    return subclass(**fields)  # type: ignore[no-any-return]


@pytest.fixture
def host(
    lab: Lab, host_ns: Namespace, tmp_path: Path
) -> Iterator[tuple[Namespace, Services, Host]]:
    h = Host(state_dir=tmp_path / "state", run_dir=tmp_path / "run", netns=host_ns.name)
    services = Services(h)
    try:
        yield host_ns, services, h
    finally:
        services.close()


def run(services: Services, h: Host, steps: list[Step], journal: Path) -> VirtnetError:
    """Apply ``steps`` then a failing step; returns the error (the plan must fail)."""
    pm, _broken, _dists = make_plugin_manager(autoload=False)
    actions: dict[str, Any] = {}
    for contribution in pm.hook.virtnet_undo_actions():
        actions.update(contribution or {})
    ctx = ApplyContext(h, actions, services=services, owner=OWNER.label)

    def boom(ctx: ApplyContext) -> None:
        raise RuntimeError("injected")

    plan = Plan([*steps, CallStep("fail", boom)])
    with pytest.raises(VirtnetError) as failed:
        services.call(apply_plan, ctx, plan, Journal(journal))
    return failed.value


def foreign_links(ns: Namespace) -> dict[str, Any]:
    """A foreign bridge, tap and veth with names virtnet's steps below will ask for."""
    ns.ip("link", "add", "fbr0", "type", "bridge")
    ns.ip("link", "set", "fbr0", "address", "02:aa:00:00:00:01", "mtu", "1400", "up")
    ns.ip("link", "set", "fbr0", "alias", "not virtnet's")
    ns.ip("tuntap", "add", "ftap0", "mode", "tap")
    ns.ip("link", "add", "fveth0", "type", "veth", "peer", "name", "fveth0p")
    ns.ip("link", "add", "lower0", "type", "veth", "peer", "name", "lower0p")
    ns.ip("link", "set", "lower0", "up")
    ns.ip("link", "add", "fmvt0", "link", "lower0", "type", "macvtap")
    ns.ip("link", "add", "fifb0", "type", "ifb")
    return {name: link_details(ns, name) for name in ("fbr0", "ftap0", "fveth0", "fmvt0", "fifb0")}


STEPS = {
    "bridge": lambda g: CreateBridge("fbr0", mac="52:54:00:00:00:01"),
    "tap": lambda g: CreateTap("ftap0", None),
    "veth": lambda g: CreateVeth("fveth0", None, "eth0", g),
    "macvtap": lambda g: CreateMacvtap("fmvt0", "lower0", "bridge", "52:54:00:00:00:02"),
    "ifb": lambda g: ShapeLink("lower0", "fifb0", outbound=Rate(average=100)),
}


@pytest.mark.parametrize("racing", [False, True], ids=["checked", "race"])
@pytest.mark.parametrize("kind", sorted(STEPS))
def test_a_foreign_link_survives_a_failed_step_bit_for_bit(
    host: tuple[Namespace, Services, Host], lab: Lab, tmp_path: Path, kind: str, racing: bool
) -> None:
    ns, services, h = host
    guest = lab.netns("guest")
    before = foreign_links(ns)
    step = STEPS[kind](guest.name)
    error = run(services, h, [racy(step) if racing else step], tmp_path / "journal")
    assert {name: link_details(ns, name) for name in before} == before, str(error)
    if racing and kind != "ifb":  # the undo ran and said why it left the link alone
        assert "not virtnet's" in str(error) or "already exists" in str(error)


def test_a_foreign_link_in_the_guest_namespace_survives(
    host: tuple[Namespace, Services, Host], lab: Lab, tmp_path: Path
) -> None:
    ns, services, h = host
    guest = lab.netns("guest")
    ns.ip("link", "add", "lower0", "type", "veth", "peer", "name", "lower0p")
    guest.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    before = json.loads(guest.ip("-d", "-j", "link", "show", "dev", "eth0").stdout)
    run(services, h, [CreateMacvlan("eth0", "lower0", "bridge", "52:54:00:00:00:03", guest.name)],
        tmp_path / "journal")  # fmt: skip
    assert json.loads(guest.ip("-d", "-j", "link", "show", "dev", "eth0").stdout) == before


def test_an_operators_route_survives_a_failed_add_of_the_same_route(
    host: tuple[Namespace, Services, Host], tmp_path: Path
) -> None:
    ns, services, h = host
    ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    ns.ip("link", "set", "up0", "up")
    ns.ip("addr", "add", "192.0.2.1/24", "dev", "up0")
    ns.ip("route", "add", "198.51.100.0/24", "via", "192.0.2.2")
    before = ns.ip("route", "show").stdout
    run(services, h, [AddRoute("198.51.100.0/24", "192.0.2.2")], tmp_path / "journal")
    assert ns.ip("route", "show").stdout == before


def test_virtnets_own_objects_carry_its_label(
    host: tuple[Namespace, Services, Host], lab: Lab, tmp_path: Path
) -> None:
    ns, services, h = host
    ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    ns.ip("link", "set", "up0", "up")
    ns.ip("addr", "add", "192.0.2.1/24", "dev", "up0")
    steps: list[Step] = [CreateBridge("vbr9"), CreateTap("vtap9", "vbr9"),
                         AddRoute("198.51.100.0/24", "192.0.2.2")]  # fmt: skip

    seen: dict[str, Any] = {}

    def look(ctx: ApplyContext) -> None:
        seen["bridge"] = link_details(ns, "vbr9")[0].get("ifalias")
        seen["tap"] = link_details(ns, "vtap9")[0].get("ifalias")
        seen["route"] = ns.ip("route", "show", "198.51.100.0/24").stdout

    run(services, h, [*steps, CallStep("look", look)], tmp_path / "journal")
    assert seen["bridge"] == seen["tap"] == OWNER.label
    assert "proto 176" in seen["route"]
    assert not {"vbr9", "vtap9"} & ns.links()  # and the rollback removed them


NAT = """<network><name>lan</name><forward mode='nat'/><bridge name='vbrg0'/>
  <ip address='10.93.0.1' prefix='24'><dhcp><range start='10.93.0.10' end='10.93.0.20'/></dhcp></ip>
</network>"""


def test_a_foreign_link_in_the_bridges_link_group_survives_destroy(
    virtnet_cli, host_ns: Namespace
) -> None:  # type: ignore[no-untyped-def]
    from virtnet.services.netlink import PORT_GROUP_BASE

    virtnet_cli("net-create", "-", input=NAT, check=True)
    virtnet_cli("net-port-create", "lan", check=True)  # a tap: in the bridge's link group
    index = json.loads(host_ns.ip("-j", "link", "show", "dev", "vbrg0").stdout)[0]["ifindex"]
    host_ns.ip("link", "add", "intruder0", "type", "veth", "peer", "name", "intruder0p")
    host_ns.ip("link", "set", "intruder0", "group", str(PORT_GROUP_BASE + index))
    virtnet_cli("net-destroy", "lan", check=True)
    assert {"intruder0", "intruder0p"} <= host_ns.links()
    assert "vbrg0" not in host_ns.links()
    assert not [n for n in host_ns.links() if n.startswith("vnet")]


def test_gc_removes_only_labelled_objects_no_record_owns(
    virtnet_cli, host_ns: Namespace, lab: Lab
) -> None:  # type: ignore[no-untyped-def]
    from virtnet.testing import snapshot

    host_ns.ip("link", "add", "lo9", "type", "veth", "peer", "name", "lo9p")  # foreign,
    host_ns.ip("link", "set", "lo9", "alias", "virtnet/net=not-a-uuid")  # with a look-alike
    host_ns.ip("link", "add", "vbrg0x", "type", "bridge")  # and a namesake-ish bridge
    baseline = snapshot(host_ns)
    guest = lab.netns("guest")
    virtnet_cli("net-create", "-", input=NAT, check=True)
    virtnet_cli("net-port-create", "lan", "--netns", guest.name, check=True)
    assert virtnet_cli("gc", "--dry-run").stdout.strip() == "nothing to collect"
    # a chain of the network as an older virtnet made them (before its networks became set
    # elements), with a map entry still jumping to it: collected though the network lives
    key = virtnet_cli("net-uuid", "lan").stdout.strip().replace("-", "")
    legacy_rules = virtnet_cli.run_dir / "legacy.nft"
    legacy_rules.write_text(
        f"add map inet virtnet fwd_in {{ type ifname : verdict ; }}\n"
        f"add chain inet virtnet n{key}_from\nadd rule inet virtnet n{key}_from reject\n"
        f'add element inet virtnet fwd_in {{ "vbrg0" : jump n{key}_from }}\n'
    )
    host_ns.exec("nft", "-f", str(legacy_rules))
    legacy = json.loads(virtnet_cli("gc", "--dry-run", "--json").stdout)["orphans"]
    assert [(o["kind"], o["name"]) for o in legacy] == [("nft-chain", f"n{key}_from")]
    assert virtnet_cli("gc").returncode == 0
    assert f"n{key}_from" not in host_ns.exec("nft", "list", "table", "inet", "virtnet").stdout
    check = virtnet_cli("net-check", "lan")
    assert check.returncode == 0, check.stdout + host_ns.exec("nft", "list", "ruleset").stdout
    host_ns.exec("nft", "delete", "map", "inet", "virtnet", "fwd_in")
    # the records are lost (a wiped run dir): everything virtnet made is now an orphan
    for path in virtnet_cli.run_dir.glob("runtime.db*"):
        path.unlink()
    for path in (virtnet_cli.run_dir / "journal").glob("*"):
        path.unlink()
    dry = virtnet_cli("gc", "--dry-run", "--json")
    found = json.loads(dry.stdout)["orphans"]
    kinds = {o["kind"] for o in found}
    assert {"link", "nft-element", "dnsmasq"} <= kinds, found
    assert not {"lo9", "vbrg0x"} & {o["name"] for o in found}
    assert "vbrg0" in host_ns.links()  # a dry run changes nothing
    done = virtnet_cli("gc")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(host_ns) == baseline
    assert virtnet_cli("gc").stdout.strip() == "nothing to collect"


def test_a_foreign_ovs_bridge_and_port_survive(
    host: tuple[Namespace, Services, Host], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtnet.services.steps import AddOvsPort, CreateOvsBridge
    from virtnet.testing.ovs import OvsServer

    ns, services, h = host
    ovs = OvsServer(ns).start()
    monkeypatch.setenv("VIRTNET_OVSDB", ovs.remote)
    try:
        ovs.vsctl("add-br", "fovs0", "--", "set", "bridge", "fovs0", "datapath_type=netdev",
                  "external_ids:owner=someone")  # fmt: skip
        ns.ip("link", "add", "fport0", "type", "veth", "peer", "name", "fport0p")
        ovs.vsctl("add-port", "fovs0", "fport0")
        before = ovs.vsctl("--format=json", "list", "Bridge") + ovs.vsctl(
            "--format=json", "list", "Port"
        )
        for step in (CreateOvsBridge("fovs0", "netdev", OWNER.network),
                     AddOvsPort("fovs0", "fport0")):  # fmt: skip
            for candidate in (step, racy(step)):
                run(services, h, [candidate], tmp_path / "journal")
                after = ovs.vsctl("--format=json", "list", "Bridge") + ovs.vsctl(
                    "--format=json", "list", "Port"
                )
                assert after == before, candidate
    finally:
        services.close()
        ovs.stop()


def test_virtnetd_collects_orphans_at_start(lab: Lab, host_ns: Namespace, tmp_path: Path) -> None:
    from virtnet.ownership import scope_of
    from virtnet.testing.daemon import Daemon
    from virtnet.testing.fixtures import run_dir_for_test

    scope = scope_of(tmp_path / "state")
    host_ns.ip("link", "add", "orphan0", "type", "bridge")
    host_ns.ip("link", "set", "orphan0", "alias", Owner(str(uuid.uuid4()), scope=scope).label)
    host_ns.ip("link", "add", "mine0", "type", "bridge")  # the operator's: no label
    host_ns.ip("link", "add", "theirs0", "type", "bridge")  # another virtnet's (its scope)
    host_ns.ip("link", "set", "theirs0", "alias", Owner(str(uuid.uuid4()), scope="ffffffff").label)
    daemon = Daemon(host_ns.name, tmp_path / "state", run_dir_for_test(), lab).start()
    try:
        assert "orphan0" not in host_ns.links() and {"mine0", "theirs0"} <= host_ns.links()
        assert "gc: removed link orphan0" in daemon.log_text()
    finally:
        daemon.stop()
        shutil.rmtree(daemon.run_dir, ignore_errors=True)


KILLED_AT_LABEL = """
import os, pickle, signal, sys
from virtnet.services import rtnl
from virtnet.apply import ApplyContext, Journal, apply_plan
from virtnet.plugins import make_plugin_manager
from virtnet.services import Services

steps, host, owner, journal = pickle.loads(bytes.fromhex(sys.argv[1]))
set_link = rtnl.Rtnl.set_link

def set_link_then_die(self, index, **changes):
    if changes.get("alias"):  # the labelling request: die before it
        os.kill(os.getpid(), signal.SIGKILL)
    return set_link(self, index, **changes)

rtnl.Rtnl.set_link = set_link_then_die
pm, _broken, _dists = make_plugin_manager(autoload=False)
actions = {}
for contribution in pm.hook.virtnet_undo_actions():
    actions.update(contribution or {})
services = Services(host)
services.call(apply_plan, ApplyContext(host, actions, services=services, owner=owner), steps,
              Journal(journal))
"""


@pytest.mark.parametrize("kind", [*sorted(STEPS), "macvlan"])
def test_a_link_made_by_a_process_killed_before_labelling_it_is_still_undone(
    host: tuple[Namespace, Services, Host], lab: Lab, tmp_path: Path, kind: str
) -> None:
    """The kernel takes a link's alias only in a second request: a link whose maker died in
    between is born in virtnet's birth group (or, a tap, not yet persistent), so recovery
    from the journal removes it, and nothing is left."""
    import pickle
    import subprocess
    import sys

    from virtnet.apply import rollback

    ns, services, h = host
    guest = lab.netns("guest")
    ns.ip("link", "add", "lower0", "type", "veth", "peer", "name", "lower0p")
    ns.ip("link", "set", "lower0", "up")
    before = ns.links(), guest.links()
    step = (CreateMacvlan("eth0", "lower0", "bridge", "52:54:00:00:00:03", guest.name)
            if kind == "macvlan" else STEPS[kind](guest.name))  # fmt: skip
    journal = tmp_path / "journal"
    payload = pickle.dumps((Plan([step]), h, OWNER.label, journal)).hex()
    died = subprocess.run([sys.executable, "-c", KILLED_AT_LABEL, payload], check=False)
    assert died.returncode == -9, "the maker was not killed at its labelling request"
    assert Journal(journal).records(), "the step's undo was journalled before it ran"
    assert (ns.links(), guest.links()) != before or kind == "tap"  # a link was left (a tap: not)
    pm, _broken, _dists = make_plugin_manager(autoload=False)
    actions: dict[str, Any] = {}
    for contribution in pm.hook.virtnet_undo_actions():
        actions.update(contribution or {})
    ctx = ApplyContext(h, actions, services=services, owner=OWNER.label)
    problems = services.call(rollback, ctx, Journal(journal))
    assert problems == []
    assert services.reaper.settle()  # what the undo retired is deleted in the background
    assert (ns.links(), guest.links()) == before


def test_a_veths_guest_end_is_born_up_and_ours_waits_down_on_the_bridge(
    host: tuple[Namespace, Services, Host], lab: Lab, tmp_path: Path
) -> None:
    """One request makes the pair: the guest's end in its namespace, named, with its MAC and
    up; ours enslaved, labelled and down (no frame reaches the bridge before the guards)."""
    host_ns, services, h = host
    guest = lab.netns("vguest")
    host_ns.ip("link", "add", "vtbr-born", "type", "bridge")
    seen: dict[str, Any] = {}

    def look(ctx: ApplyContext) -> None:
        seen["guest"] = json.loads(guest.ip("-j", "-d", "link", "show", "eth0").stdout)[0]
        seen["ours"] = json.loads(host_ns.ip("-j", "-d", "link", "show", "vtvb0").stdout)[0]

    veth = CreateVeth("vtvb0", "vtbr-born", "eth0", guest.name, peer_mac="52:54:00:b0:00:01")
    failed = run(services, h, [veth, CallStep("look", look)], tmp_path / "journal")
    assert "injected" in str(failed)
    assert "UP" in seen["guest"]["flags"] and seen["guest"]["address"] == "52:54:00:b0:00:01"
    assert "UP" not in seen["ours"]["flags"]
    assert seen["ours"]["master"] == "vtbr-born"
    assert seen["ours"]["ifalias"] == OWNER.label
    # rolled back: both ends gone (the guest's with ours), the bridge (not ours) kept
    assert "vtvb0" not in host_ns.links() and "eth0" not in guest.links()
    assert "vtbr-born" in host_ns.links()
