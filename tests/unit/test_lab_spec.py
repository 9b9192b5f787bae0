"""Lab files: the examples parse, and mistakes are refused with the path to the mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from virtnet.errors import InvalidInput
from virtnet.lab.spec import load, parse

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_seed_lab_parses_with_its_variants() -> None:
    spec = load(EXAMPLES / "archnetwork.yaml")
    assert [g.name for g in spec.guests] == ["a", "b", "c"]
    lan1 = spec.network("lan1")
    assert "br-lan1" in lan1.xml_for(None)[0]
    assert lan1.xml_for("macvtap") == (lan1.variants["macvtap"], "macvtap")
    assert spec.network("vlan1").xml_for("macvtap")[1] is None  # no variant: the default
    assert any(e.seen_as == "host.eth1" for e in spec.expect)
    assert sum(not e.reachable for e in spec.expect) >= 8  # what must NOT connect, too


def test_the_office_lab_parses() -> None:
    spec = load(EXAMPLES / "routed-office.yaml")
    assert [p.isolated for g in spec.guests for p in g.ports] == [None, True, True]
    assert any(e.resolve == "files.office.test" for e in spec.expect)


BASE = """
name: t
lans: {lan: {peers: {pc: {address: 10.0.0.2/24}}}}
host: {nics: {eth0: {lan: lan, address: 10.0.0.1/24}}}
networks: {n: {xml: "<network><name>n</name></network>"}}
guests: {g: {ports: [{network: n}]}}
expect: [{from: g, to: pc}]
"""


@pytest.mark.parametrize(
    ("change", "subject"),
    [
        (
            lambda d: d["guests"]["g"]["ports"][0].update(network="nope"),
            "guests.g.ports[0].network",
        ),
        (lambda d: d["guests"].update({"Bad_Name": {"ports": []}}), "guests.Bad_Name"),
        (lambda d: d["expect"].append({"from": "g", "to": "ghost"}), "expect[1].to"),
        (lambda d: d["host"]["nics"]["eth0"].update(lan="lan9"), "host.nics.eth0.lan"),
        (
            lambda d: d["lans"]["lan"]["peers"]["pc"].update(address="10.0.0.300/24"),
            "lans.lan.peers.pc.address",
        ),
        (lambda d: d["networks"]["n"].update(colour="blue"), "networks.n"),
        (lambda d: d["guests"]["g"]["ports"][0].update(mac="zz"), "guests.g.ports[0].mac"),
        (
            lambda d: d["expect"].append({"from": "g", "to": "pc", "resolve": "x"}),
            "expect[1].answer",
        ),
        (lambda d: d["networks"].update(m={"on": {"ovs": {"xml": "x"}}}), "networks.m"),
    ],
)
def test_mistakes_name_their_place(change: object, subject: str) -> None:
    data = yaml.safe_load(BASE)
    change(data)  # type: ignore[operator]
    with pytest.raises(InvalidInput) as err:
        parse(data)
    assert err.value.subject == subject


def test_yaml_on_key_trap_is_caught() -> None:
    """YAML 1.1 reads a bare ``on:`` as the boolean true: the lab format uses ``variants:``."""
    data = yaml.safe_load(
        BASE.replace('{xml: "<network><name>n</name></network>"}', '{xml: "<network/>", on: {}}')
    )
    with pytest.raises(InvalidInput, match="reads as true"):
        parse(data)


def test_the_ovn_seed_lab_parses() -> None:
    spec = load(EXAMPLES / "archnetwork-ovn.yaml")
    assert spec.chassis == ("hv1", "hv2", "hv3")
    assert {g.name: g.host for g in spec.guests} == {"a": "hv1", "b": "hv3", "c": "hv2"}
    assert [(n.chassis, n.name, n.physnet) for n in spec.chassis_nics] == [
        ("hv1", "eth0", "lan1"),
        ("hv3", "eth1", "lan2"),
    ]
    assert any(e.seen_as == "uplink.vlan1" for e in spec.expect)


OVN_BASE = """
name: t
ovn: {chassis: [hv1]}
lans: {lan: {peers: {pc: {address: 10.0.0.2/24}}}}
hosts: {hv1: {nics: {eth0: {lan: lan, physnet: p1}}}}
networks: {n: {xml: "<network><name>n</name></network>"}}
guests: {g: {host: hv1, ports: [{network: n}]}}
"""


@pytest.mark.parametrize(
    ("change", "subject"),
    [
        (lambda d: d["guests"]["g"].pop("host"), "guests.g.host"),
        (lambda d: d["guests"]["g"].update(host="hv9"), "guests.g.host"),
        (lambda d: d.update(hosts={"hv9": {}}), "hosts.hv9"),
        (lambda d: d["hosts"]["hv1"]["nics"]["eth0"].update(physnet="a b"), "physnet"),
        (lambda d: d["hosts"]["hv1"]["nics"]["eth0"].update(lan="nope"), "lan"),
        (lambda d: d.update(host={"nics": {}}), "host"),
        (lambda d: d.update(ovn={"chassis": ["hv1", "hv1"]}), "ovn.chassis"),
        (lambda d: d.pop("ovn"), "hosts"),
        (lambda d: d.update(expect=[{"from": "uplink.n", "to": "pc"}]), "expect[0].from"),
    ],
)
def test_ovn_lab_mistakes_name_their_place(change: object, subject: str) -> None:
    data = yaml.safe_load(OVN_BASE)
    change(data)  # type: ignore[operator]
    with pytest.raises(InvalidInput) as err:
        parse(data)
    assert subject in str(err.value.subject)
