"""Each validation rule: bad input is refused with the field and the reason named."""

from __future__ import annotations

import pytest

from virtnet.errors import Conflict, InvalidInput
from virtnet.model import parse_network, validate_against, validate_network


def net(body: str, name: str = "n", attrs: str = "") -> str:
    return f"<network{attrs}><name>{name}</name>{body}</network>"


NAT = "<forward mode='nat'/>"
IP24 = "<ip address='10.0.0.1' prefix='24'>{}</ip>"

CASES = [
    # (xml, subject in the message, reason in the message)
    (net("", name="a/b"), "network/name", "must not contain '/'"),
    (net("", name=".hidden"), "network/name", "must not start with '.'"),
    (net("", name="a\tb"), "network/name", "control characters"),
    (net("", name="x" * 65), "network/name", "longer than 64"),
    (net("<uuid>not-a-uuid</uuid>"), "network/uuid", "not a UUID"),
    (net("<bridge name='averyveryverylongname'/>"), "network/bridge/@name", "longer than 15"),
    (net("<bridge name='br:0'/>"), "network/bridge/@name", "may hold only"),
    (net("<mac address='01:00:5e:00:00:01'/>"), "network/mac/@address", "multicast"),
    (net("<mac address='zz'/>"), "network/mac/@address", "not a MAC"),
    (net(IP24.replace("10.0.0.1", "10.0.0.300").format("")), "network/ip/@address", "not an IP"),
    (
        net(IP24.replace("10.0.0.1", "10.0.0.0").format("")),
        "network/ip/@address",
        "network address",
    ),
    (
        net("<ip address='10.0.0.1' prefix='24' netmask='255.0.0.0'/>"),
        "network/ip/@netmask",
        "not both",
    ),
    (net("<ip address='10.0.0.1' netmask='255.0.255.0'/>"), "network/ip/@netmask", "not a netmask"),
    (net("<ip address='10.0.0.1' prefix='33'/>"), "network/ip/@prefix", "longer than 32"),
    (
        net("<ip family='ipv6' address='10.0.0.1' prefix='64'/>"),
        "network/ip/@address",
        "not an IPv6",
    ),
    (
        net(IP24.format("<dhcp><range start='10.0.1.2' end='10.0.1.9'/></dhcp>")),
        "network/ip/dhcp/range/@start",
        "outside 10.0.0.0/24",
    ),
    (
        net(IP24.format("<dhcp><range start='10.0.0.9' end='10.0.0.2'/></dhcp>")),
        "network/ip/dhcp/range",
        "after end",
    ),
    (
        net(IP24.format("<dhcp><range start='10.0.0.1' end='10.0.0.9'/></dhcp>")),
        "network/ip/dhcp/range",
        "contains the host's address",
    ),
    (
        net(
            IP24.format(
                "<dhcp><range start='10.0.0.2' end='10.0.0.9'/><range start='10.0.0.5' end='10.0.0.20'/></dhcp>"
            )
        ),
        "network/ip/dhcp/range[2]",
        "overlaps",
    ),
    (
        net(IP24.format("<dhcp><host mac='52:54:00:00:00:01' ip='10.0.0.1'/></dhcp>")),
        "network/ip/dhcp/host/@ip",
        "host's own address",
    ),
    (
        net(IP24.format("<dhcp><host mac='52:54:00:00:00:01' ip='10.9.0.5'/></dhcp>")),
        "network/ip/dhcp/host/@ip",
        "outside",
    ),
    (
        net(
            IP24.format(
                "<dhcp><host mac='52:54:00:00:00:01' ip='10.0.0.5'/><host mac='52:54:00:00:00:01' ip='10.0.0.6'/></dhcp>"
            )
        ),
        "network/ip/dhcp/host[2]/@mac",
        "duplicate MAC",
    ),
    (
        net(
            IP24.format(
                "<dhcp><host mac='52:54:00:00:00:01' ip='10.0.0.5'/><host mac='52:54:00:00:00:02' ip='10.0.0.5'/></dhcp>"
            )
        ),
        "network/ip/dhcp/host[2]/@ip",
        "duplicate IP",
    ),
    (
        net(
            IP24.format("<dhcp><host name='a' ip='10.0.0.5'/><host name='a' ip='10.0.0.6'/></dhcp>")
        ),
        "network/ip/dhcp/host[2]/@name",
        "duplicate name",
    ),
    (
        net(IP24.format("<dhcp><host ip='10.0.0.5'/></dhcp>")),
        "network/ip/dhcp/host",
        "needs mac or name",
    ),
    (
        net(
            IP24.format(
                "<dhcp><host mac='52:54:00:00:00:01' name='bad name' ip='10.0.0.5'/></dhcp>"
            )
        ),
        "network/ip/dhcp/host/@name",
        "not a valid DNS name",
    ),
    (
        net("<ip address='10.0.0.1' prefix='24'/><ip address='10.0.0.129' prefix='25'/>"),
        "network/ip[2]/@address",
        "overlaps",
    ),
    (
        net(
            IP24.format("<dhcp><range start='10.0.0.2' end='10.0.0.3'/></dhcp>")
            + "<ip address='10.1.0.1' prefix='24'><dhcp><range start='10.1.0.2' end='10.1.0.3'/></dhcp></ip>"
        ),
        "network/ip[2]/dhcp",
        "only one IPv4",
    ),
    (
        net(IP24.format("") + "<route address='10.5.0.0' prefix='16' gateway='10.9.9.9'/>"),
        "network/route/@gateway",
        "not on any of the network's subnets",
    ),
    (net("<forward mode='bridge'/>"), "network/bridge/@name", "needs <bridge name=...>"),
    (
        net("<forward mode='bridge' dev='eth0'/><bridge name='br0'/>"),
        "network/forward/@dev",
        "not both",
    ),
    (
        net("<forward mode='bridge'/><bridge name='br0'/>" + IP24.format("")),
        "network/ip",
        "not allowed with forward mode 'bridge'",
    ),
    (net("<forward mode='vepa'/>"), "network/forward/@dev", "needs a device"),
    (
        net("<forward mode='private' dev='eth0'/><bridge name='br0'/>"),
        "network/bridge",
        "not allowed",
    ),
    (
        net("<forward mode='nat'><interface dev='a'/><interface dev='a'/></forward>"),
        "network/forward/interface",
        "listed twice",
    ),
    (net("<forward mode='open' dev='eth0'/>"), "network/forward/@dev", "takes no forward device"),
    (
        net(NAT + "<virtualport type='openvswitch'/>"),
        "network/virtualport",
        "not allowed with forward mode 'nat'",
    ),
    (
        net("<forward mode='nat'><nat><address start='10.0.0.9' end='10.0.0.1'/></nat></forward>"),
        "network/forward/nat/address",
        "after end",
    ),
    (
        net("<forward mode='nat'><nat><port start='2000' end='1000'/></nat></forward>"),
        "network/forward/nat/port",
        "after end",
    ),
    (
        net(
            "<forward mode='bridge'/><bridge name='br0'/><vlan trunk='no'><tag id='1'/><tag id='2'/></vlan>"
        ),
        "network/vlan/@trunk",
        "several tags need trunk",
    ),
    (
        net(
            "<forward mode='bridge'/><bridge name='br0'/><vlan><tag id='1' nativeMode='untagged'/></vlan>"
        ),
        "network/vlan/tag/@nativeMode",
        "needs a trunk",
    ),
    (
        net("<portgroup name='a' default='yes'/><portgroup name='b' default='yes'/>"),
        "network/portgroup",
        "more than one default",
    ),
    (net("<portgroup name='a'/><portgroup name='a'/>"), "network/portgroup/@name", "duplicate"),
    (net("<dns><host ip='10.0.0.5'/></dns>"), "network/dns/host", "at least one <hostname>"),
    (
        net("<dns><srv service='ldap' protocol='sctp'/></dns>"),
        "network/dns/srv/@protocol",
        "not 'tcp' or 'udp'",
    ),
    (
        net("<dns><txt name='bad name' value='x'/></dns>"),
        "network/dns/txt/@name",
        "not a valid DNS name",
    ),
    (net("<domain name='-bad-'/>"), "network/domain/@name", "not a valid DNS name"),
    (net("<title>two\nlines</title>"), "network/title", "one line"),
    (net("<title><b>bold</b></title>"), "network/title/b", "not supported"),
    (net("<domain name='a.example' register='maybe'/>"), "network/domain/@register", "not 'yes'"),
    # syntax, caught by the parser
    (net("<bridge name='b' stp='maybe'/>"), "network/bridge/@stp", "not 'yes' or 'no'"),
    (net("<mtu size='abc'/>"), "network/mtu/@size", "not an integer"),
    (net("<mtu size='10'/>"), "network/mtu/@size", "out of range"),
    (net("<forward mode='teleport'/>"), "network/forward/@mode", "not one of"),
    (net("<frobnicate/>"), "network/frobnicate", "not supported"),
    (net("<bridge name='b' zone='a,b'/>"), "network/bridge/@zone", "not a firewalld zone"),
    (net("<ip/>"), "network/ip/@address", "required"),
    ("<network>", "network", "malformed XML at line 1, column 10: Premature end of data"),
    ("<network>\n<name>x</name>\n<ip></network>", "network", "line 3, column 15: Opening"),
    ("<domain><name>x</name></domain>", "network", "expected a <network>"),
    ("<network/>", "network/name", "required"),
    (net("<mtu size='1500'/><mtu size='1500'/>"), "network/mtu", "only once"),
]


@pytest.mark.parametrize(("xml", "subject", "reason"), CASES, ids=[f"{c[1]}:{c[2]}" for c in CASES])
def test_bad_input_names_field_and_reason(xml: str, subject: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_network(parse_network(xml))
    assert caught.value.subject == subject
    assert reason in str(caught.value)


def test_entities_are_not_expanded() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE network [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><network><name>&b;</name></network>'
    )
    with pytest.raises(InvalidInput):
        validate_network(parse_network(bomb))


def test_external_entities_are_not_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE network [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<network><name>&x;</name></network>"
    )
    try:
        parsed = parse_network(xxe)
    except InvalidInput:
        return
    assert "TOPSECRET" not in parsed.name


def test_overlapping_subnet_with_another_network() -> None:
    a = parse_network(net("<ip address='10.0.0.1' prefix='16'/>", name="a"))
    b = parse_network(net("<ip address='10.0.5.1' prefix='24'/>", name="b"))
    with pytest.raises(InvalidInput, match=r"overlaps 10\.0\.0\.0/16 of network 'a'") as caught:
        validate_against(b, [a])
    assert caught.value.subject == "network/ip/@address"


def test_same_uuid_or_bridge_as_another_network_conflicts() -> None:
    a = parse_network(
        net("<uuid>6f81a092-04f6-4a4d-b097-03c38ee00928</uuid><bridge name='br7'/>", name="a")
    )
    b = parse_network(net("<uuid>6f81a092-04f6-4a4d-b097-03c38ee00928</uuid>", name="b"))
    with pytest.raises(Conflict, match="uuid"):
        validate_against(b, [a])
    c = parse_network(net("<bridge name='br7'/>", name="c"))
    with pytest.raises(Conflict, match="bridge 'br7'"):
        validate_against(c, [a])


def test_a_good_network_passes() -> None:
    good = net(
        NAT
        + IP24.format(
            "<dhcp><range start='10.0.0.2' end='10.0.0.254'/>"
            "<host mac='52:54:00:00:00:01' name='a' ip='10.0.0.2'/></dhcp>"
        )
    )
    validate_network(parse_network(good))
