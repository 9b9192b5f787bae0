"""Pure logic of the vendor contract: labels, API versions, fault specs, the collector's
bookkeeping, drift merging, broken plugins' one-liners."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from virtnet import drift, gc
from virtnet.apply import ApplyContext, _fault
from virtnet.backend import Host
from virtnet.ownership import COOKIE_TAG, Owner, cookie, owns, parse_label, scope_of
from virtnet.plan import Undo
from virtnet.plugin_loading import BrokenPlugin, first_line
from virtnet.plugins import api_problem

NET, PORT = str(uuid.uuid4()), str(uuid.uuid4())


def test_labels_name_the_network_and_port_and_parse_back() -> None:
    owner = Owner(NET, PORT)
    assert owner.label == f"virtnet/net={NET}/port={PORT}"
    assert parse_label(owner.label) == owner
    assert parse_label(Owner(NET).label) == Owner(NET)
    scoped = Owner(NET, PORT, "0a1b2c3d")
    assert scoped.label == f"virtnet/0a1b2c3d/net={NET}/port={PORT}"
    assert parse_label(scoped.label) == scoped
    assert scope_of(Path("/var/lib/virtnet")) != scope_of(Path("/var/lib/myapp"))
    for foreign in (None, "", "virtnet", f"virtnet/net={NET}/extra", "virtnet/net=xyz",
                    f" virtnet/net={NET}"):  # fmt: skip
        assert parse_label(foreign) is None


def test_an_undo_removes_only_what_carries_its_label() -> None:
    net, port = Owner(NET).label, Owner(NET, PORT).label
    assert owns(net, net) and owns(port, port)
    assert owns(net, port)  # a network's teardown takes what its ports left
    assert not owns(port, net)  # a port's undo never takes the network's bridge
    assert not owns(net, Owner(str(uuid.uuid4())).label)
    assert not owns(net, None) and not owns(net, "not virtnet's")
    assert owns(None, port) and not owns(None, None)  # a journal from before labels


def test_openflow_cookies_carry_the_tag() -> None:
    value = cookie(0x525400ABCDEF)
    assert value >> 48 == COOKIE_TAG and value & 0xFFFFFFFFFFFF == 0x525400ABCDEF


@pytest.mark.parametrize(
    ("version", "usable"),
    [
        ("1.0", True),
        ("1.1", True),
        ("1.2", False),
        ("2.0", False),
        ("0.9", False),
        ("one", False),
        ("1", False),
    ],
)
def test_api_versions_follow_the_documented_rule(version: str, usable: bool) -> None:
    assert (api_problem(version) is None) is usable


def test_a_broken_plugin_is_one_line() -> None:
    try:
        raise NameError("name 'shutil' is not defined\nmore lines")
    except NameError as exc:
        error = first_line(exc)
    broken = BrokenPlugin("mine", "import", error, "virtnet-mine 1.0", "virtnet.drivers: m = m:b")
    assert broken.line() == (
        "mine: UNUSABLE (import failed: virtnet-mine 1.0, virtnet.drivers: m = m:b): "
        "NameError: name 'shutil' is not defined"
    )
    assert "\n" not in broken.line()


@pytest.mark.parametrize(
    ("spec", "owner", "expected"),
    [
        ("network:raise:3", Owner(NET).label, ("raise", 3)),
        ("network:raise:3", Owner(NET, PORT).label, ("", None)),
        ("port:kill:0", Owner(NET, PORT).label, ("kill", 0)),
        ("port:explode:0", Owner(NET, PORT).label, ("", None)),
        ("", Owner(NET).label, ("", None)),
    ],
)
def test_fault_specs(
    spec: str, owner: str, expected: tuple[str, int | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTNET_FAULT", spec)
    ctx = ApplyContext(Host(state_dir=None, run_dir=None), {}, owner=owner)  # type: ignore[arg-type]
    assert _fault(ctx) == expected


def test_the_collector_keeps_what_records_own_and_all_it_cannot_read() -> None:
    records = gc.Records(frozenset({NET}), frozenset({PORT}), scope="0a1b2c3d")
    assert records.owns(Owner(NET, scope="0a1b2c3d")) and records.owns(Owner(NET, PORT, "0a1b2c3d"))
    assert records.owns(None)  # not a label of ours: never a candidate
    assert not records.owns(Owner(NET, str(uuid.uuid4()), "0a1b2c3d"))
    assert not records.owns(Owner(str(uuid.uuid4()), scope="0a1b2c3d"))
    # another virtnet's objects in the same namespace: its records, not ours, own them
    assert records.owns(Owner(str(uuid.uuid4()), scope="ffffffff"))


def test_nftables_keys_and_verdicts_as_the_collector_reads_them() -> None:
    assert gc._key("vnet1") == '"vnet1"'
    assert gc._key({"prefix": {"addr": "10.0.0.0", "len": 24}}) == "10.0.0.0/24"
    assert gc._jump_target({"jump": {"target": "nabc_from"}}) == "nabc_from"
    assert gc._jump_target("accept") is None


def test_drift_lines_are_not_said_twice() -> None:
    core = [("br0", "link br0 is missing"), ("dnsmasq", "dnsmasq (x) is not running")]
    assert drift.merge(["bridge br0 is missing"], core) == [
        "bridge br0 is missing",
        "dnsmasq (x) is not running",
    ]


def test_undo_records_carry_their_owner_through_json() -> None:
    undo = Undo("core.link.delete", {"ifname": "x"}, owner=Owner(NET).label)
    assert Undo.from_dict(undo.as_dict()) == undo
    assert "owner" not in Undo("a").as_dict()
