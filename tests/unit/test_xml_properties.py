"""Hypothesis: any model object survives format -> parse unchanged."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from virtnet.model import (
    IP,
    Bandwidth,
    Bridge,
    Dhcp,
    DhcpHost,
    DhcpRange,
    Dns,
    DnsForwarder,
    DnsHost,
    DnsTxt,
    Domain,
    Forward,
    ForwardMode,
    Lease,
    Network,
    PortGroup,
    Rate,
    Route,
    VirtualPort,
    Vlan,
    VlanTag,
    format_network,
    parse_network,
)

text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x7f"),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip() == s)
label = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
ifname = st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True)
tri = st.none() | st.booleans()
small = st.integers(min_value=0, max_value=100_000)
mac = st.tuples(*[st.integers(0, 255)] * 3).map(
    lambda t: "52:54:00:{:02x}:{:02x}:{:02x}".format(*t)
)
v4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


@st.composite
def ips(draw: st.DrawFn) -> IP:
    ip = IP(address=draw(v4), prefix=draw(st.none() | st.integers(8, 30)))
    if ip.prefix is None:
        ip.netmask = draw(st.none() | st.sampled_from(["255.255.255.0", "255.255.0.0"]))
    ip.local_ptr = draw(tri)
    ip.tftp_root = draw(st.none() | st.just("/srv/tftp"))
    if draw(st.booleans()):
        lease = st.none() | st.builds(
            Lease, small, st.none() | st.sampled_from(["seconds", "minutes", "hours"])
        )
        ip.dhcp = Dhcp(
            ranges=draw(st.lists(st.builds(DhcpRange, v4, v4, lease), max_size=2)),
            hosts=draw(
                st.lists(
                    st.builds(
                        DhcpHost,
                        st.none() | mac,
                        st.none(),
                        st.none() | label,
                        st.none() | v4,
                        lease,
                    ),
                    max_size=2,
                )
            ),
        )
        if not (ip.dhcp.ranges or ip.dhcp.hosts):
            ip.dhcp = None
    return ip


rate = st.builds(Rate, st.none() | small, st.none() | small, st.none() | small, st.none() | small)
bandwidth = st.builds(Bandwidth, st.none() | rate, st.none() | rate).filter(
    lambda b: b.inbound is not None or b.outbound is not None
)
vlan = st.builds(
    Vlan,
    st.lists(
        st.builds(
            VlanTag, st.integers(0, 4095), st.none() | st.sampled_from(["tagged", "untagged"])
        ),
        min_size=1,
        max_size=3,
    ),
    st.none() | st.just(True),
)
virtualport = st.builds(
    VirtualPort,
    st.sampled_from(["openvswitch", "802.1Qbh"]),
    st.dictionaries(st.sampled_from(["interfaceid", "profileid"]), label, max_size=2),
)


@st.composite
def networks(draw: st.DrawFn) -> Network:
    net = Network(name=draw(text), uuid=draw(st.none() | st.uuids().map(str)))
    net.title = draw(st.none() | text)
    net.description = draw(st.none() | st.lists(text, min_size=1, max_size=3).map("\n".join))
    mode = draw(st.sampled_from(list(ForwardMode)))
    if mode != ForwardMode.ISOLATED:
        net.forward = Forward(mode=mode, dev=draw(st.none() | ifname))
        net.forward.interfaces = draw(st.lists(ifname, max_size=2))
    net.bridge = draw(
        st.none()
        | st.builds(
            Bridge,
            st.none() | ifname,
            tri,
            st.none() | st.integers(0, 3600),
            st.none() | st.just("kernel"),
        )
    )
    net.mtu = draw(st.none() | st.integers(68, 9000))
    net.mac = draw(st.none() | mac)
    net.domain = draw(st.none() | st.builds(Domain, label, tri, tri))
    if draw(st.booleans()):
        net.dns = Dns(
            enable=draw(tri),
            forward_plain_names=draw(tri),
            forwarders=draw(
                st.lists(st.builds(DnsForwarder, st.none() | v4, st.none() | label), max_size=2)
            ),
            txts=draw(st.lists(st.builds(DnsTxt, label, text), max_size=2)),
            hosts=draw(
                st.lists(
                    st.builds(DnsHost, v4, st.lists(label, min_size=1, max_size=2)), max_size=2
                )
            ),
        )
        if not (
            net.dns.enable is not None
            or net.dns.forward_plain_names is not None
            or net.dns.forwarders
            or net.dns.txts
            or net.dns.hosts
        ):
            net.dns = None
    net.vlan = draw(st.none() | vlan)
    net.bandwidth = draw(st.none() | bandwidth)
    net.port_isolated = draw(tri)
    net.ips = draw(st.lists(ips(), max_size=2))
    net.routes = draw(
        st.lists(
            st.builds(
                Route,
                v4,
                v4,
                st.none(),
                st.integers(0, 32),
                st.none(),
                st.none() | st.integers(1, 100),
            ),
            max_size=2,
        )
    )
    net.virtualport = draw(st.none() | virtualport)
    net.portgroups = draw(
        st.lists(
            st.builds(
                PortGroup,
                label,
                st.none() | st.just(True),
                tri,
                st.none() | vlan,
                st.none() | virtualport,
                st.none() | bandwidth,
            ),
            max_size=2,
        )
    )
    return net


@settings(max_examples=300, deadline=None)
@given(networks())
def test_format_then_parse_is_identity(net: Network) -> None:
    assert parse_network(format_network(net)) == net
