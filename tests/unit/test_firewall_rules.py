"""nftables statements rendered from the model (no kernel)."""

from __future__ import annotations

import pytest

from virtnet.errors import InvalidInput
from virtnet.model import parse_network
from virtnet.model.network import ForwardMode
from virtnet.services import firewall_rules as fw
from virtnet.services import guard_rules
from virtnet.services.nft import quote

UUID = "11111111-2222-3333-4444-555555555555"
KEY = UUID.replace("-", "")


def rules(forward: str, ips: str = "<ip address='10.1.0.1' prefix='24'/>") -> fw.NetworkRules:
    net = parse_network(
        f"<network><name>a</name><uuid>{UUID}</uuid>{forward}<bridge name='vb1'/>{ips}</network>"
    )
    made = fw.network_rules(net, "vb1")
    assert made is not None
    return made


def test_nat_masquerades_subnet_and_spares_multicast_and_broadcast() -> None:
    script = fw.add_network(rules("<forward mode='nat'/>"))
    chain = f"inet virtnet n{KEY}_nat4"
    assert f"add rule {chain} ip daddr 224.0.0.0/24 return" in script
    assert f"add rule {chain} ip daddr 255.255.255.255 return" in script
    for proto in ("tcp", "udp"):
        assert f"add rule {chain} meta l4proto {proto} masquerade to :1024-65535" in script
    assert f"add rule {chain} masquerade" in script
    assert f"add element inet virtnet nat4 {{ 10.1.0.0/24 : jump n{KEY}_nat4 }}" in script
    to = f"inet virtnet n{KEY}_to"
    assert f"add rule {to} ip daddr 10.1.0.0/24 ct state established,related accept" in script


def test_nat_range_and_forward_dev() -> None:
    r = rules(
        "<forward mode='nat' dev='eth1'><nat><address start='1.2.3.4' end='1.2.3.9'/>"
        "<port start='2000' end='3000'/></nat></forward>"
    )
    script = "\n".join(fw.add_network(r))
    for proto in ("tcp", "udp"):
        assert f'oifname "eth1" meta l4proto {proto} snat ip to 1.2.3.4-1.2.3.9:2000-3000' in script
    assert 'oifname "eth1" ip saddr 10.1.0.0/24 accept' in script
    assert 'iifname "eth1" ip daddr 10.1.0.0/24 ct state established,related accept' in script


def test_route_forwards_both_ways_without_nat() -> None:
    r = rules("<forward mode='route'/>")
    script = "\n".join(fw.add_network(r))
    assert "nat4" not in script and "masquerade" not in script
    assert f"add rule inet virtnet n{KEY}_to ip daddr 10.1.0.0/24 accept" in script


def test_isolated_forwards_nothing_off_the_bridge() -> None:
    r = rules("")
    assert r.mode is ForwardMode.ISOLATED
    script = fw.add_network(r)
    forwarding = [s for s in script if f"n{KEY}_from" in s or f"n{KEY}_to " in s]
    assert not any(f in s for s in forwarding for f in ("ip saddr", "ip6 saddr", "daddr"))
    assert f"add rule inet virtnet n{KEY}_from reject" in script


@pytest.mark.parametrize("forward", ["<forward mode='open'/>", "<forward mode='bridge'/>"])
def test_open_and_bridge_modes_get_no_rules(forward: str) -> None:
    net = parse_network(
        f"<network><name>a</name><uuid>{UUID}</uuid>{forward}<bridge name='vb1'/></network>"
    )
    assert fw.network_rules(net, "vb1") is None


def test_removal_mirrors_addition() -> None:
    r = rules(
        "<forward mode='nat'><nat ipv6='yes'/></forward>",
        "<ip address='10.1.0.1' prefix='24'/><ip family='ipv6' address='fd00::1' prefix='64'/>",
    )
    added = fw.add_network(r)
    removed = fw.remove_network(r)
    for chain in r.chains:
        assert f"add chain inet virtnet {chain}" in added
        assert f"delete chain inet virtnet {chain}" in removed
    assert "delete element inet virtnet nat6 { fd00::/64 }" in removed


def test_port_guard_is_set_elements_in_a_safe_order() -> None:
    g = guard_rules.PortGuard("vnet1", "52:54:00:aa:bb:cc", ("10.1.0.5", "fd00::5"))
    added = guard_rules.port_guard_changes(g, add=True, addresses=g.ips)
    sets = ["port_mac", "port_hw", "allowed4", "allowed6", "target6", "guarded"]
    assert [c.set for c in added] == sets
    assert all(c.add and c.family == "bridge" and c.table == "virtnet" for c in added)
    # keys as the kernel stores them: fields padded to 32 bits
    assert added[0].keys == (b"vnet1".ljust(16, b"\0") + bytes.fromhex("525400aabbcc") + b"\0\0",)
    assert added[1].keys == added[0].keys  # the same bytes under a raw-payload type
    assert added[2].keys == (bytes.fromhex("525400aabbcc") + b"\0\0" + bytes([10, 1, 0, 5]),)
    assert added[3].keys == added[4].keys
    removed = guard_rules.port_guard_changes(g, add=False, leased=("10.1.0.77",))
    assert [c.set for c in removed] == ["guarded", "leased4", "port_hw", "port_mac"]
    assert not any(c.add for c in removed)


def test_host_guard_keys_dhcp_by_mac_and_isolation() -> None:
    mac = bytes.fromhex("525400aabbcc")
    changes = guard_rules.host_guard_changes("52:54:00:aa:bb:cc", True, True, add=True)
    assert [(c.family, c.set) for c in changes] == [
        ("inet", "guest_hw"),
        ("inet", "guest_mac"),
        ("inet", "isolated_mac"),
    ]
    assert changes[0].keys == (mac + b"\0\0" + mac + b"\0\0",)
    assert changes[1].keys == (mac,)  # a single field is not padded


def test_eui64_link_local() -> None:
    assert guard_rules.eui64_link_local("52:54:00:aa:bb:cc") == "fe80::5054:ff:feaa:bbcc"


@pytest.mark.parametrize("name", ['br"0', "br*", "br\\0", ""])
def test_interface_names_nft_would_misread_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        quote(name)


def test_a_network_of_links_matches_them_by_prefix_and_they_join_one_by_one() -> None:
    net = parse_network(
        "<network><name>p</name><uuid>6f1c1d2e-0000-4000-8000-000000000001</uuid>"
        "<forward mode='nat'/><ip address='10.5.0.1' prefix='24'/></network>"
    )
    r = fw.network_rules(net, "vp6f1c1", prefix=True)
    assert r is not None and r.prefix and r.mac is None
    added = "\n".join(fw.add_network(r))
    assert 'oifname "vp6f1c1*" accept' in added
    assert "fwd_in" not in added and "guest_in" not in added  # ports join one by one
    key = r.key
    assert fw.join_link(key, "vp6f1c1abcd1234") == [
        f'add element inet virtnet fwd_in {{ "vp6f1c1abcd1234" : jump n{key}_from }}',
        f'add element inet virtnet fwd_out {{ "vp6f1c1abcd1234" : jump n{key}_to }}',
        f'add element inet virtnet guest_in {{ "vp6f1c1abcd1234" : jump n{key}_host }}',
    ]
    assert not any("fwd_in" in line for line in fw.remove_network(r))


def test_isolated_network_keeps_the_hosts_address_to_itself() -> None:
    r = rules("")
    assert r.guards_host and f"n{KEY}_in" in r.chains
    added = fw.add_network(r)
    assert f'add rule inet virtnet n{KEY}_in iifname "vb1" accept' in added
    assert f'add rule inet virtnet n{KEY}_in iifname "lo" accept' in added
    assert f"add element inet virtnet local4 {{ 10.1.0.1 : jump n{KEY}_in }}" in added
    assert "delete element inet virtnet local4 { 10.1.0.1 }" in fw.remove_network(r)
    assert not rules("<forward mode='nat'/>").guards_host


def test_many_ports_removals_merge_into_one_message_per_set_and_bounded_transactions() -> None:
    from virtnet.services.nft_elements import KEYS_PER_BATCH, merged

    guards = [
        guard_rules.PortGuard(f"vnet{i}", f"52:54:00:00:{i // 256:02x}:{i % 256:02x}", ())
        for i in range(KEYS_PER_BATCH + 7)
    ]
    changes = [c for g in guards for c in guard_rules.port_guard_changes(g, add=False)]
    batches = merged(changes)
    keys = [k for batch in batches for change in batch for k in change.keys]
    assert sorted(keys) == sorted(k for c in changes for k in c.keys)  # nothing lost or doubled
    assert all(sum(len(c.keys) for c in batch) <= KEYS_PER_BATCH for batch in batches)
    sets = [(c.set, c.add) for batch in batches for c in batch]
    assert len(sets) <= len(set(sets)) + len(batches) - 1  # a set is split only at a boundary
    first = [c.set for c in guard_rules.port_guard_changes(guards[0], add=False)]
    order = list(dict.fromkeys(c.set for batch in batches for c in batch))
    assert order == first  # the order of removal kept: "guarded" first
    assert merged([]) == []


def test_every_openflow_guard_drop_is_counted_under_a_reason() -> None:
    """Each drop rule of the OVS guard maps to one reason, as ``guard_drops`` reads them back
    from ``dump-flows`` (table and match), and the reasons are the nftables guard's where
    they mean the same."""
    from virtnet.services import openflow
    from virtnet.services.guard_rules import DROP_REASONS

    reasons = {}
    for flow in openflow.guard_flows(0x42, 3, "52:54:00:00:00:01", ("10.0.0.5",)):
        fields = flow.split(",")
        if fields[-1] != "actions=drop":
            continue
        table = int(next(f for f in fields if f.startswith("table="))[6:])
        match = {f for f in fields[:-1] if not f.startswith(("cookie=", "table="))}
        reasons[flow] = openflow.drop_reason(table, match)
    assert set(reasons.values()) == {
        "dropped_mac", "dropped_dhcp", "dropped_ra", "dropped_nd", "dropped4", "dropped6",
        "dropped_other",
    }  # fmt: skip
    assert set(reasons.values()) - {"dropped_other"} <= set(DROP_REASONS)
    assert set(reasons.values()) <= set(openflow.OVS_DROP_REASONS)
    line = (" cookie=0x42, duration=9.1s, table=2, n_packets=3, n_bytes=129, idle_age=4, "
            "priority=11,ip,dl_src=52:54:00:00:00:01 actions=drop")  # fmt: skip
    found = openflow._FLOW.search(line.strip())
    assert found is not None
    assert (found["cookie"], found["packets"], found["idle"]) == ("0x42", "3", "4")
    assert openflow.drop_reason(2, set(found["match"].split(","))) == "dropped4"
