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


def elements(r: fw.NetworkRules) -> dict[str, list[tuple[str, ...]]]:
    found: dict[str, list[tuple[str, ...]]] = {}
    for name, fields in fw.network_elements(r):
        found.setdefault(name, []).append(fields)
    return found


def test_a_network_is_elements_of_shared_sets_labelled_with_its_key() -> None:
    """No chain, rule or jump (a transaction adding one makes the kernel validate the whole
    table) and no range where an exact key does (hash sets: constant time to add and to
    delete): a start and a stop cost the same with 1 or 1,000 networks."""
    r = rules("<forward mode='nat'/>")
    script = fw.add_network(r)
    assert all(s.startswith("add element inet virtnet ") for s in script)
    assert all(s.endswith(f'comment "n{KEY}" }}') for s in script)
    assert r.chains == []
    assert elements(r) == {
        "links": [('"vb1"',)],
        "same": [('"vb1"', '"vb1"')],
        "out4": [('"vb1"',)],  # its own sources only: the kernel's reverse path check
        "in4_ct": [('"vb1"',)],  # NAT: replies only
        "masq4": [("10.1.0.0/24",)],
    }


def test_the_shared_chains_check_addresses_by_route_and_leave_nat_subnets_alone() -> None:
    base = fw.inet_base()
    post = "add rule inet virtnet postrouting"
    assert f"{post} ip daddr 224.0.0.0/24 return" in base
    assert f"{post} ip daddr 255.255.255.255 return" in base
    # guest to guest, bridged or routed, and the host's address on the network to its
    # guests (dnsmasq's DHCP replies): not NATed
    assert f"{post} ip saddr @masq4 ip daddr @masq4 return" in base
    for proto in ("tcp", "udp"):
        assert f"{post} ip saddr @masq4 meta l4proto {proto} masquerade to :1024-65535" in base
    assert f"{post} ip saddr @masq4 masquerade" in base
    assert base.index(f"{post} ip saddr vmap @nat4") < base.index(
        f"{post} ip daddr 224.0.0.0/24 return"
    )
    check = "meta nfproto ipv4 iifname @out4 fib saddr . iif oif exists accept"
    assert f"add rule inet virtnet from_net {check}" in base
    assert "add rule inet virtnet host_in fib daddr . iif type local accept" in base
    # the sets every element goes in are declared, with the fields nft_raw encodes
    from virtnet.services.nft_raw import SETS

    assert set(fw.SET_TYPES) | {"nat4", "nat6"} == set(SETS)
    for name, kind in fw.SET_TYPES.items():
        assert len(kind.split(" . ")) == len(SETS[name].fields), name
        interval = "flags interval" in next(
            line for line in base if line.startswith(f"add set inet virtnet {name} ")
        )
        assert interval == SETS[name].interval, name


def test_nat_range_and_forward_dev() -> None:
    r = rules(
        "<forward mode='nat' dev='eth1'><nat><address start='1.2.3.4' end='1.2.3.9'/>"
        "<port start='2000' end='3000'/></nat></forward>"
    )
    script = "\n".join(fw.add_network(r))
    for proto in ("tcp", "udp"):
        assert f'oifname "eth1" meta l4proto {proto} snat ip to 1.2.3.4-1.2.3.9:2000-3000' in script
    assert f"add element inet virtnet nat4 {{ 10.1.0.0/24 : jump n{KEY}_nat4 }}" in script
    assert r.chains == [f"n{KEY}_nat4"]
    found = elements(r)
    assert found["out4_dev"] == [('"vb1"', '"eth1"')]
    assert found["in4_ct_dev"] == [('"vb1"', '"eth1"')]
    assert "masq4" not in found and "masq4_dev" not in found  # its own chain NATs it


def test_nat_out_of_one_device_masquerades_only_there() -> None:
    found = elements(rules("<forward mode='nat' dev='eth1'/>"))
    assert found["masq4_dev"] == [("10.1.0.0/24", '"eth1"')]
    assert "masq4" not in found


def test_route_forwards_both_ways_without_nat() -> None:
    found = elements(rules("<forward mode='route'/>"))
    assert found["in4"] == [('"vb1"',)] and found["out4"] == found["in4"]
    assert not {"in4_ct", "masq4"} & set(found)


def test_nat_without_ipv6_nat_routes_its_ipv6_subnet() -> None:
    found = elements(
        rules(
            "<forward mode='nat'/>",
            "<ip address='10.1.0.1' prefix='24'/><ip family='ipv6' address='fd00::1' prefix='64'/>",
        )
    )
    assert found["in4_ct"] == [('"vb1"',)] and found["in6"] == [('"vb1"',)]
    assert "masq6" not in found


def test_isolated_forwards_nothing_off_the_bridge() -> None:
    r = rules("")
    assert r.mode is ForwardMode.ISOLATED
    found = elements(r)
    assert not [name for name in found if name.startswith(("out", "in", "masq"))]
    assert found["same"] == [('"vb1"', '"vb1"')]  # between its own ports only


@pytest.mark.parametrize("forward", ["<forward mode='open'/>", "<forward mode='bridge'/>"])
def test_open_and_bridge_modes_get_no_rules(forward: str) -> None:
    net = parse_network(
        f"<network><name>a</name><uuid>{UUID}</uuid>{forward}<bridge name='vb1'/></network>"
    )
    assert fw.network_rules(net, "vb1") is None


@pytest.mark.parametrize(
    "nat", ["<nat ipv6='yes'/>", "<nat ipv6='yes'><port start='2000' end='3000'/></nat>"]
)
def test_removal_mirrors_addition(nat: str) -> None:
    r = rules(
        f"<forward mode='nat'>{nat}</forward>",
        "<ip address='10.1.0.1' prefix='24'/><ip family='ipv6' address='fd00::1' prefix='64'/>",
    )
    added = fw.add_network(r)
    removed = fw.remove_network(r)
    for chain in r.chains:
        assert f"add chain inet virtnet {chain}" in added
        assert f"delete chain inet virtnet {chain}" in removed
    adds = [s.split(" comment ")[0].replace("add element", "delete element") + " }"
            for s in added if s.startswith("add element") and " comment " in s]  # fmt: skip
    assert adds and set(adds) <= set(removed)
    assert ("delete element inet virtnet nat6 { fd00::/64 }" in removed) == bool(r.chains)


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
    assert elements(r) == {
        "same_p": [('"vp6f1c1*"', '"vp6f1c1*"')],  # one range: its links, however many
        "masq4": [("10.5.0.0/24",)],
    }
    key = r.key
    link = '"vp6f1c1abcd1234"'
    assert fw.join_link(key, "vp6f1c1abcd1234", r) == [
        f'add element inet virtnet links {{ {link} comment "n{key}" }}',
        f'add element inet virtnet out4 {{ {link} comment "n{key}" }}',
        f'add element inet virtnet in4_ct {{ {link} comment "n{key}" }}',
    ]
    assert fw.leave_link("vp6f1c1abcd1234", r) == [
        f"delete element inet virtnet links {{ {link} }}",
        f"delete element inet virtnet out4 {{ {link} }}",
        f"delete element inet virtnet in4_ct {{ {link} }}",
    ]
    # a backend that passes no rules (or an older journal's undo): the dispatch only
    assert fw.join_link(key, "vp6f1c1abcd1234") == [
        f'add element inet virtnet links {{ {link} comment "n{key}" }}'
    ]
    assert fw.leave_link("vp6f1c1abcd1234") == [f"delete element inet virtnet links {{ {link} }}"]
    assert not any(" links " in line for line in fw.remove_network(r))


def test_isolated_network_keeps_the_hosts_address_to_itself() -> None:
    r = rules("")
    assert r.guards_host
    assert elements(r)["isolated4"] == [("10.1.0.1",)]
    base = fw.inet_base()
    assert "add rule inet virtnet input ip daddr @isolated4 jump own_in" in base
    assert "add rule inet virtnet own_in fib daddr . iif type local accept" in base
    assert 'add rule inet virtnet own_in iifname "lo" accept' in base
    assert "delete element inet virtnet isolated4 { 10.1.0.1 }" in fw.remove_network(r)
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
