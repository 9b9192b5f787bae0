"""``virtnet gc`` reads set and map elements in every shape libnftables' JSON gives them."""

from __future__ import annotations

import pytest

from virtnet.gc import element_parts

COUNTER = {"packets": 3, "bytes": 180}


@pytest.mark.parametrize(
    ("elem", "parts"),
    [
        ("vnet1", ["vnet1"]),
        ({"concat": ["vnet1", "10.0.0.5"]}, ["vnet1", "10.0.0.5"]),
        (["vnet1", "accept"], ["vnet1"]),  # a map entry: its key
        ([{"concat": ["52:54:00:00:00:01", "vnet1"]}, "drop"], ["52:54:00:00:00:01", "vnet1"]),
        # what the per-port drop counters look like once a packet was counted (this crashed
        # virtnetd's start-up collection: "unhashable type: 'dict'")
        ({"elem": {"val": "vnet1", "counter": COUNTER}}, ["vnet1"]),
        ({"elem": {"val": {"concat": ["vnet1", "10.0.0.5"]}, "counter": COUNTER}},
         ["vnet1", "10.0.0.5"]),
        ([{"elem": {"val": "vnet1", "timeout": 60}}, "accept"], ["vnet1"]),
    ],
)  # fmt: skip
def test_element_keys_of_every_shape(elem: object, parts: list[object]) -> None:
    assert element_parts(elem) == parts


def test_a_networks_element_is_written_back_as_nft_deletes_it() -> None:
    """The collector removes a network's elements by the text nft takes: names quoted (a
    prefix of names keeps its star), prefixes as address/length, MACs bare."""
    from virtnet.gc import _element_text

    prefix = {"prefix": {"addr": "10.1.0.0", "len": 24}}
    assert _element_text(["vnr*", prefix], ["ifname", "ipv4_addr"]) == '"vnr*" . 10.1.0.0/24'
    assert _element_text([prefix, "eth0"], ["ipv4_addr", "ifname"]) == '10.1.0.0/24 . "eth0"'
    assert _element_text(["vb1", "52:54:00:00:00:01"], ["ifname", "ether_addr"]) == (
        '"vb1" . 52:54:00:00:00:01'
    )
