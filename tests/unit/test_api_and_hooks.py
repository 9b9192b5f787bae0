"""The core's dispatch through pluggy: claiming, overrides, capability checks, events, ports.

These use in-process plugins whose steps change nothing on the host (the kernel side of the
contract is covered in tests/integration/test_plugin_contract.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from virtnet import hookimpl
from virtnet.api import Virtnet
from virtnet.apply import ApplyContext
from virtnet.backend import FEATURE_VLAN, BackendInfo, Readiness
from virtnet.errors import Conflict, InvalidInput, NotFound, Unsupported
from virtnet.events import Event, EventKind
from virtnet.model import ForwardMode, Network, NetworkPort, Plug
from virtnet.model.port import AttachmentKind
from virtnet.plan import CallStep, Plan


class Recorder:
    """A backend whose steps only record what they would do."""

    def __init__(
        self,
        name: str,
        modes: set[ForwardMode],
        features: frozenset[str] = frozenset(),
        problems: tuple[str, ...] = (),
    ) -> None:
        self.name, self.modes, self.features, self.problems = name, modes, features, problems
        self.log: list[str] = []

    @hookimpl
    def virtnet_backend_describe(self) -> BackendInfo:
        return BackendInfo(
            self.name,
            "1.0",
            "records",
            frozenset(self.modes),
            frozenset({AttachmentKind.TAP}),
            self.features,
            Readiness(self.problems),
        )

    @hookimpl(trylast=True)
    def virtnet_network_claim(self, network: Network) -> str | None:
        return self.name if network.mode in self.modes else None

    @hookimpl
    def virtnet_undo_actions(self) -> dict[str, Any]:
        return {f"{self.name}.undo": lambda ctx, args: self.log.append(f"undo {args['what']}")}

    @hookimpl
    def virtnet_network_plan_start(self, network: Network) -> Plan:
        return Plan([self._step(f"start {network.name}")], info={"by": self.name})

    @hookimpl
    def virtnet_port_plan_plug(self, network: Network, port: NetworkPort) -> Plan:
        port.plug = Plug(type="network", bridge="br-test")
        return Plan([self._step(f"plug {port.mac}")])

    @hookimpl
    def virtnet_network_check(self) -> list[str]:
        return []

    def _step(self, what: str) -> CallStep:
        def run(ctx: ApplyContext) -> None:
            self.log.append(what)

        return CallStep(what, run, f"{self.name}.undo", {"what": what})


def make(tmp_path: Path, *plugins: object) -> Virtnet:
    return Virtnet(tmp_path / "s", tmp_path / "r", plugins=plugins, autoload=False)


NAT = "<network><name>{name}</name><forward mode='nat'/><ip address='{ip}' prefix='24'/></network>"


def test_lifecycle_dispatches_only_to_the_claiming_backend(tmp_path: Path) -> None:
    nat = Recorder("natter", {ForwardMode.NAT})
    iso = Recorder("isolator", {ForwardMode.ISOLATED})
    vn = make(tmp_path, nat, iso)
    vn.define_network(NAT.format(name="a", ip="10.1.0.1"))
    vn.define_network("<network><name>b</name></network>")
    vn.start_network("a")
    vn.start_network("b")
    assert nat.log == ["start a"] and iso.log == ["start b"]
    vn.destroy_network("a")
    assert nat.log == ["start a", "undo start a"] and iso.log == ["start b"]
    info = vn.network_info("b")
    assert info["status"]["by"] == "isolator"
    assert info["claim"].startswith("claimed by plugin")  # which plugin, and so why


def test_backend_override_wins_over_claims(tmp_path: Path) -> None:
    first, second = Recorder("first", {ForwardMode.NAT}), Recorder("second", {ForwardMode.NAT})
    vn = make(tmp_path, first, second)
    net = vn.define_network(NAT.format(name="a", ip="10.1.0.1"), backend="second")
    assert "virtnet:backend" in vn.dumpxml("a") and net.metadata
    vn.start_network("a")
    assert second.log == ["start a"] and first.log == []
    with pytest.raises(Unsupported, match="backend 'nope' is not installed"):
        vn.define_network(NAT.format(name="c", ip="10.3.0.1"), backend="nope")


def test_a_third_party_claim_is_asked_before_builtin_trylast_ones(tmp_path: Path) -> None:
    builtin = Recorder("builtin", {ForwardMode.NAT})

    class Policy:
        @hookimpl
        def virtnet_network_claim(self, network: Network) -> str | None:
            return "vendor" if network.name.startswith("v-") else None

    vendor = Recorder("vendor", {ForwardMode.NAT})
    vendor.virtnet_network_claim = None  # type: ignore[assignment,method-assign]
    vn = make(tmp_path, builtin, Policy(), vendor)
    vn.define_network(NAT.format(name="v-1", ip="10.1.0.1"))
    vn.define_network(NAT.format(name="plain", ip="10.2.0.1"))
    vn.start_network("v-1")
    vn.start_network("plain")
    assert vendor.log == ["start v-1"] and builtin.log == ["start plain"]


def test_capabilities_and_readiness_are_checked_before_anything_runs(tmp_path: Path) -> None:
    ovsish = Recorder("br", {ForwardMode.BRIDGE})
    broken = Recorder("broken", {ForwardMode.NAT}, problems=("kernel module foo is missing",))
    vn = make(tmp_path, ovsish, broken)
    vn.define_network(
        "<network><name>t</name><forward mode='bridge'/><bridge name='br0'/>"
        "<vlan><tag id='5'/></vlan></network>"
    )
    with pytest.raises(Unsupported, match="backend 'br' does not support vlan"):
        vn.start_network("t")
    vn.define_network(NAT.format(name="n", ip="10.1.0.1"))
    with pytest.raises(Unsupported, match="cannot run on this host: kernel module foo is missing"):
        vn.start_network("n")
    assert ovsish.log == [] and broken.log == []


def test_events_reach_observers_in_order(tmp_path: Path) -> None:
    seen: list[Event] = []
    vn = make(tmp_path, Recorder("r", {ForwardMode.NAT}))
    vn.subscribe(seen.append)
    vn.define_network(NAT.format(name="a", ip="10.1.0.1"))
    vn.start_network("a")
    port = vn.create_port("a")
    vn.delete_port(port.uuid or "")
    vn.destroy_network("a")
    vn.undefine_network("a")
    assert [e.kind for e in seen] == [
        EventKind.NETWORK_DEFINED,
        EventKind.NETWORK_STARTED,
        EventKind.PORT_PLUGGED,
        EventKind.PORT_UNPLUGGED,
        EventKind.NETWORK_STOPPED,
        EventKind.NETWORK_UNDEFINED,
    ]
    assert seen[2].port == port.uuid


def test_a_failing_observer_does_not_break_the_operation(tmp_path: Path) -> None:
    vn = make(tmp_path, Recorder("r", {ForwardMode.NAT}))
    vn.subscribe(lambda event: 1 / 0)  # type: ignore[arg-type,func-returns-value]
    vn.define_network(NAT.format(name="a", ip="10.1.0.1"))
    assert [n.name for n in vn.list_networks()] == ["a"]


def test_validate_hook_can_veto_a_definition(tmp_path: Path) -> None:
    class SitePolicy:
        @hookimpl
        def virtnet_network_validate(self, network: Network) -> None:
            if network.name.startswith("prod"):
                raise InvalidInput("prod networks are managed elsewhere", subject="network/name")

    vn = make(tmp_path, SitePolicy())
    with pytest.raises(InvalidInput, match="managed elsewhere"):
        vn.define_network("<network><name>prod1</name></network>")
    assert vn.list_networks() == []


def test_ports_inherit_from_portgroups_and_get_unique_macs(tmp_path: Path) -> None:
    rec = Recorder("r", {ForwardMode.BRIDGE}, frozenset({FEATURE_VLAN}))
    vn = make(tmp_path, rec)
    vn.define_network(
        "<network><name>pg</name><forward mode='bridge'/><bridge name='br0'/>"
        "<portgroup name='web' default='yes'><vlan><tag id='10'/></vlan></portgroup>"
        "<portgroup name='db'><vlan><tag id='20'/></vlan></portgroup></network>"
    )
    vn.start_network("pg")
    a = vn.create_port("pg")
    b = vn.create_port("pg", NetworkPort(network="pg", portgroup="db", mac="52:54:00:00:00:AA"))
    assert a.portgroup == "web" and a.vlan and a.vlan.tags[0].id == 10
    assert (
        b.portgroup == "db" and b.vlan and b.vlan.tags[0].id == 20 and b.mac == "52:54:00:00:00:aa"
    )
    assert a.mac != b.mac and a.plug and a.plug.bridge == "br-test"
    with pytest.raises(Conflict, match="already used"):
        vn.create_port("pg", NetworkPort(network="pg", mac=b.mac))
    with pytest.raises(InvalidInput, match="no portgroup 'nope'"):
        vn.create_port("pg", NetworkPort(network="pg", portgroup="nope"))
    assert {p.uuid for p in vn.list_ports("pg")} == {a.uuid, b.uuid}
    assert vn.get_port(a.uuid or "").mac == a.mac
    vn.destroy_network("pg")  # unplugs its ports first
    assert sorted(rec.log[-3:-1]) == sorted([f"undo plug {a.mac}", f"undo plug {b.mac}"])
    assert rec.log[-1] == "undo start pg"
    with pytest.raises(NotFound):
        vn.get_port(a.uuid or "")


def test_redefine_keeps_uuid_bridge_and_mac(tmp_path: Path) -> None:
    vn = make(tmp_path)
    first = vn.define_network(NAT.format(name="a", ip="10.1.0.1"))
    again = vn.define_network(NAT.format(name="a", ip="10.1.0.1").replace("24", "16"))
    assert (again.uuid, again.mac, again.bridge and again.bridge.name) == (
        first.uuid,
        first.mac,
        first.bridge and first.bridge.name,
    )
    second = vn.define_network(NAT.format(name="b", ip="10.2.0.1"))
    assert second.bridge and second.bridge.name == "virbr1"


def test_transient_network_disappears_on_destroy(tmp_path: Path) -> None:
    vn = make(tmp_path, Recorder("r", {ForwardMode.NAT}))
    vn.create_network(NAT.format(name="t", ip="10.1.0.1"))
    rows = vn.list_networks()
    assert [(r.name, r.active, r.persistent) for r in rows] == [("t", True, False)]
    with pytest.raises(Conflict, match="already active"):
        vn.create_network(NAT.format(name="t", ip="10.1.0.1"))
    vn.destroy_network("t")
    assert vn.list_networks() == []


def test_state_survives_a_new_process_object(tmp_path: Path) -> None:
    rec = Recorder("r", {ForwardMode.NAT})
    make(tmp_path, rec).define_network(NAT.format(name="a", ip="10.1.0.1"))
    vn = make(tmp_path, rec)
    vn.start_network("a")
    vn.set_autostart("a")
    again = make(tmp_path, rec)
    row = again.list_networks()[0]
    assert (row.name, row.active, row.autostart, row.backend) == ("a", True, True, "r")
    assert again.lookup_uuid(row.uuid) == "a"


def test_state_files_are_private(tmp_path: Path) -> None:
    make(tmp_path).define_network("<network><name>a</name></network>")
    for path in (tmp_path / "s", tmp_path / "s" / "virtnet.db", tmp_path / "r" / "journal"):
        assert path.stat().st_mode & 0o077 == 0, path
    # searchable, not listable or writable: dnsmasq's own user reaches its files below it
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o711


def test_a_teardown_undoes_many_journals_with_one_finish(tmp_path: Path) -> None:
    """rollback_all: each journal newest record first, in the order given; what undo actions
    defer (ctx.finally_) runs once, after all of them; every journal is removed."""
    from virtnet.apply import Journal, rollback_all
    from virtnet.backend import Host
    from virtnet.plan import Undo

    done: list[str] = []

    def undo(ctx: ApplyContext, args: dict[str, Any]) -> None:
        done.append(args["what"])
        if not ctx.finally_:
            ctx.finally_.append(lambda: done.append("finish"))

    journals = [Journal(tmp_path / f"j{i}.jsonl") for i in range(3)]
    for i, journal in enumerate(journals):
        for step in ("a", "b"):
            journal.append(Undo("test.undo", {"what": f"{i}{step}"}, owner="virtnet/x"))
        journal.close()
    ctx = ApplyContext(Host(tmp_path, tmp_path), {"test.undo": undo})
    assert rollback_all(ctx, journals) == []
    assert done == ["0b", "0a", "1b", "1a", "2b", "2a", "finish"]
    assert not any(journal.exists() for journal in journals)
