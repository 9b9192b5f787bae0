"""Which statements nft_raw sends itself, and which it leaves to libnftables (None): it must
never guess. The bytes are proven against the kernel in tests/integration/test_nft_raw.py."""

from __future__ import annotations

import pytest

from virtnet.model.network import ForwardMode
from virtnet.services import firewall_rules as rules
from virtnet.services.nft_raw import (
    NFT_MSG_DELCHAIN,
    NFT_MSG_DELTABLE,
    NFT_MSG_NEWRULE,
    compile_script,
)


@pytest.mark.parametrize("mode", [ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.ISOLATED])
def test_every_statement_of_a_network_compiles(mode: ForwardMode) -> None:
    r = rules.NetworkRules("f" * 32, "vbr0", mode, ("10.1.0.0/24",), ("fd00::/64",),
                           forward_dev="eth0", nat_ipv6=True, addresses=("10.1.0.1", "fd00::1"),
                           mac="52:54:00:00:00:01")  # fmt: skip
    added = compile_script("\n".join(rules.add_network(r)))
    removed = compile_script("\n".join(rules.remove_network(r)))
    assert added is not None and removed is not None
    assert sum(m.kind == NFT_MSG_NEWRULE for m in added) == sum(
        s.startswith("add rule") for s in rules.add_network(r)
    )
    assert sum(m.kind == NFT_MSG_DELCHAIN for m in removed) == len(r.chains)


@pytest.mark.parametrize(
    "statement",
    [
        "add table inet virtnet",  # the base: libnftables
        "add map inet virtnet fwd_in { type ifname : verdict ; }",
        "add rule inet virtnet c ip daddr { 10.0.0.1, 10.0.0.2 } accept",  # anonymous sets
        "add rule inet virtnet c counter accept",  # an expression it does not know
        "add rule inet virtnet c ip saddr 10.0.0.0/33 accept",  # not an address
        "add rule inet virtnet c ip saddr 10.0.0.1/24 accept",  # host bits set: nft's call
        "add rule inet virtnet c ip saddr 0.0.0.0/0 accept",  # nft drops such a match
        "add rule inet virtnet c accept reject",  # a verdict must end the rule
        'add rule inet virtnet c iifname "a-name-too-long-x" accept',
        "add rule bridge virtnet c accept",  # only inet rules
        "add element inet virtnet unknown_map { 10.0.0.1 : jump c }",
        "add element inet virtnet nat4 { 255.255.255.0/24 : jump c }",  # no end after it
        'add element inet virtnet fwd_in { "x" : goto c }',
        'add element inet virtnet same { "x" }',  # a field short
        'add element inet virtnet same { "x" . "y" . "z" }',  # a field too many
        'add element inet virtnet same { "x" , "y" }',
        'add element inet virtnet same_p { "*" . "*" }',  # every name: nft refuses it too
        'add element inet virtnet same { "vn*" . "vn*" }',  # a hash set holds no range
        'add element inet virtnet links { "x*" }',  # a hash set holds no range
        "add element inet virtnet isolated4 { 10.0.0.0/24 }",
        'add element inet virtnet masq4_dev { "x" . "y" }',  # a name, not an address
        "add element inet virtnet nat4 { 10.0.0.0/24 }",  # a verdict map's entry needs one
        'add element inet virtnet masq4 { 10.0.0.0/24 comment "x" : jump c }',
        'add element inet virtnet same { "x" . "x" comment "%s" }' % ("c" * 128),
    ],
)
def test_other_shapes_are_left_to_libnftables(statement: str) -> None:
    assert compile_script(statement) is None
    assert compile_script(f"add chain inet virtnet c\n{statement}") is None  # all or nothing


def test_deleting_a_table_is_one_message_naming_it() -> None:
    """What a stop sends when the last network is gone (the kernel deletes what it holds)."""
    (message,) = compile_script("delete table bridge virtnet") or []
    assert (message.kind, message.family) == (NFT_MSG_DELTABLE, 7)
    assert message.body.endswith(b"virtnet\0\0") or message.body.endswith(b"virtnet\0")
    assert compile_script("delete table bridge virtnet extra") is None


def test_a_networks_elements_are_ranges_where_the_set_has_them() -> None:
    """pipapo (several fields with ranges): one element with a key and an inclusive key
    end, a prefix of names being every name that starts with it; rbtree (one field with
    ranges): a start and an end after it; a hash set: the key alone. The comment rides as
    nft's element user data."""
    (pipapo,) = (
        compile_script('add element inet virtnet same_p { "vn*" . "vbr0" comment "n1" }') or []
    )
    assert b"vn" + b"\0" * 14 + b"vbr0" + b"\0" * 12 in pipapo.body  # the key
    assert b"vn" + b"\xff" * 14 + b"vbr0" + b"\0" * 12 in pipapo.body  # its end
    assert b"\x00\x03n1\x00" in pipapo.body
    (masq,) = compile_script("add element inet virtnet masq4 { 10.1.0.0/24 }") or []
    assert bytes([10, 1, 0, 0]) in masq.body and bytes([10, 1, 1, 0]) in masq.body
    (pair,) = compile_script('delete element inet virtnet same { "vb0" . "vb0" }') or []
    assert (b"vb0" + b"\0" * 13) * 2 in pair.body and b"\xff" not in pair.body
