"""A network's rules sent as raw netlink (virtnet.services.nft_raw) are the rules libnftables
makes of the same statements: the kernel lists the same ruleset either way, for every shape
of network, and removing them leaves the same base behind.

Each way runs in a namespace of its own, on a thread that entered it (libnftables and the
raw socket act in their creating thread's namespace)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from virtnet.model.network import ForwardMode
from virtnet.services import firewall_rules as rules
from virtnet.services.nft import Nft
from virtnet.services.nft_raw import compile_script
from virtnet.testing.netns import Lab, Namespace

KEY = "0123456789abcdef0123456789abcdef"
SHAPES = {
    "nat": rules.NetworkRules(
        KEY,
        "vbr0",
        ForwardMode.NAT,
        ("10.1.0.0/24",),
        ("fd00:1::/64",),
        addresses=("10.1.0.1", "fd00:1::1"),
        mac="52:54:00:00:00:01",
    ),
    "nat, dev, v6, ports": rules.NetworkRules(
        KEY,
        "vbr0",
        ForwardMode.NAT,
        ("10.1.0.0/22", "10.9.8.0/26"),
        ("fd00:1::/64",),
        forward_dev="eth0",
        nat_ports=(2000, 3000),
        nat_ipv6=True,
        addresses=("10.1.0.1",),
        mac="52:54:00:00:00:01",
    ),
    "nat, addresses": rules.NetworkRules(
        KEY,
        "vbr0",
        ForwardMode.NAT,
        ("10.1.0.0/24",),
        nat_addresses=("192.0.2.1", "192.0.2.9"),
        addresses=("10.1.0.1",),
    ),
    "nat, one address": rules.NetworkRules(
        KEY,
        "vbr0",
        ForwardMode.NAT,
        ("10.1.0.0/24",),
        nat_addresses=("192.0.2.1", "192.0.2.1"),
        nat_ports=(5000, 5000),
        addresses=("10.1.0.1",),
    ),
    "route": rules.NetworkRules(
        KEY,
        "vbr0",
        ForwardMode.ROUTE,
        ("10.1.0.0/25",),
        ("fd00:1::/48",),
        forward_dev="eth1",
        addresses=("10.1.0.1", "fd00:1::1"),
    ),
    "route, links by prefix": rules.NetworkRules(
        KEY, "vnr", ForwardMode.ROUTE, ("10.1.0.0/24",), addresses=("10.1.0.1",), prefix=True
    ),
    "nat, dev": rules.NetworkRules(
        KEY,
        "vbr0",
        ForwardMode.NAT,
        ("10.1.0.0/24",),
        ("fd00:1::/64",),
        forward_dev="eth0",
        nat_ipv6=True,
        addresses=("10.1.0.1",),
    ),
    "isolated, links by prefix": rules.NetworkRules(
        KEY, "vnr", ForwardMode.ISOLATED, ("10.1.0.0/24",), addresses=("10.1.0.1",), prefix=True
    ),
    "isolated": rules.NetworkRules(
        KEY,
        "vbr0",
        ForwardMode.ISOLATED,
        ("10.1.0.0/24",),
        ("fd00:1::/64",),
        addresses=("10.1.0.1", "fd00:1::1"),
        mac="52:54:00:00:00:01",
    ),
}


def _listing(ns: Namespace) -> list[dict[str, Any]]:
    """The table as the kernel has it, without handles (numbers of insertion order)."""
    out = subprocess.run(["ip", "netns", "exec", ns.name, "nft", "-j", "list", "table", "inet",
                          rules.TABLE], capture_output=True, text=True, check=True).stdout  # fmt: skip
    items = json.loads(out)["nftables"]

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in ("handle",)}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return [clean(item) for item in items if "metainfo" not in item]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Namespace, Namespace]]:
    lab = Lab()
    try:
        yield lab.netns("text"), lab.netns("raw")
    finally:
        lab.cleanup()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_raw_rules_are_the_rules_libnftables_makes(
    pair: tuple[Namespace, Namespace], shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = SHAPES[shape]
    text, raw = pair
    added, removed = rules.add_network(r), rules.remove_network(r)
    assert compile_script("\n".join(added)) is not None, "a network's statements compile"
    assert compile_script("\n".join(removed)) is not None
    listings = []
    for ns, way in ((text, "0"), (raw, "1")):
        monkeypatch.setenv("VIRTNET_NFT_RAW", way)

        def add(ns: Namespace = ns, way: str = way) -> None:
            nft = Nft()
            nft.run("\n".join(rules.inet_base()), "base")
            if way == "1":  # the raw batch itself, not a fallback to libnftables
                assert nft.run_raw("\n".join(added))
            else:
                nft.run("\n".join(added), "a network")

        ns.call(add)
        listings.append(_listing(ns))
    assert listings[0] == listings[1]
    names = {item["chain"]["name"] for item in listings[1] if "chain" in item}
    assert set(r.chains) <= names  # the network's own chains, made raw
    monkeypatch.setenv("VIRTNET_NFT_RAW", "0")
    text.call(lambda: Nft().run("\n".join(removed), "its removal"))
    monkeypatch.setenv("VIRTNET_NFT_RAW", "1")
    assert raw.call(lambda: Nft().run_raw("\n".join(removed)))
    after = [_listing(text), _listing(raw)]
    assert after[0] == after[1]
    assert not any("chain" in item and item["chain"]["name"].startswith("n") for item in after[1])
    for ns in pair:
        subprocess.run(["ip", "netns", "exec", ns.name, "nft", "delete", "table", "inet",
                        rules.TABLE], check=True)  # fmt: skip


def test_neighbouring_subnets_share_an_interval_boundary(
    pair: tuple[Namespace, Namespace], monkeypatch: pytest.MonkeyPatch
) -> None:
    """10.1.0.0/24 ends where 10.1.1.0/24 starts in the masquerading set (the same key, once
    as an interval's end, once as a start): both ways list the same, and removing the first
    leaves the second whole."""
    first = rules.NetworkRules("a" * 32, "vbra", ForwardMode.NAT, ("10.1.0.0/24",),
                               addresses=("10.1.0.1",))  # fmt: skip
    second = rules.NetworkRules("b" * 32, "vbrb", ForwardMode.NAT, ("10.1.1.0/24",),
                                addresses=("10.1.1.1",))  # fmt: skip
    text, raw = pair
    monkeypatch.setenv("VIRTNET_NFT_RAW", "0")

    def by_text() -> None:
        nft = Nft()
        nft.run("\n".join(rules.inet_base()), "base")
        for r in (first, second):
            nft.run("\n".join(rules.add_network(r)), "a network")

    text.call(by_text)
    monkeypatch.setenv("VIRTNET_NFT_RAW", "1")

    def by_raw() -> None:
        nft = Nft()
        nft.run("\n".join(rules.inet_base()), "base")
        for r in (first, second):
            assert nft.run_raw("\n".join(rules.add_network(r)))

    raw.call(by_raw)
    assert _listing(text) == _listing(raw)
    monkeypatch.setenv("VIRTNET_NFT_RAW", "0")
    text.call(lambda: Nft().run("\n".join(rules.remove_network(first)), "removal"))
    monkeypatch.setenv("VIRTNET_NFT_RAW", "1")
    assert raw.call(lambda: Nft().run_raw("\n".join(rules.remove_network(first))))
    assert _listing(text) == _listing(raw)
    masq4 = [i["set"] for i in _listing(raw) if i.get("set", {}).get("name") == "masq4"]
    assert masq4[0]["elem"] == [
        {"elem": {"val": {"prefix": {"addr": "10.1.1.0", "len": 24}}, "comment": f"n{'b' * 32}"}}
    ]
    for ns in pair:
        subprocess.run(["ip", "netns", "exec", ns.name, "nft", "delete", "table", "inet",
                        rules.TABLE], check=True)  # fmt: skip
