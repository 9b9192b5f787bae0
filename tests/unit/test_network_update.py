"""net-update on the model: every section, every command, and clear refusals."""

from __future__ import annotations

import pytest

from virtnet.errors import InvalidInput, NotFound
from virtnet.model import parse_network
from virtnet.model.update import apply_update

BASE = parse_network(
    "<network><name>u</name><bridge name='b'/>"
    "<dns><host ip='10.0.0.50'><hostname>db</hostname></host></dns>"
    "<ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.100' end='10.0.0.150'/>"
    "<host mac='52:54:00:00:00:01' ip='10.0.0.10'/></dhcp></ip>"
    "<ip family='ipv6' address='fd00::1' prefix='64'/>"
    "<portgroup name='web'/></network>"
)


def test_dhcp_host_add_modify_delete() -> None:
    added = apply_update(
        BASE, "add", "ip-dhcp-host", "<host mac='52:54:00:00:00:02' ip='10.0.0.11'/>"
    )
    assert [h.ip for h in added.ips[0].dhcp.hosts] == ["10.0.0.10", "10.0.0.11"]  # type: ignore[union-attr]
    first = apply_update(
        BASE, "add-first", "ip-dhcp-host", "<host mac='52:54:00:00:00:02' ip='10.0.0.11'/>"
    )
    assert first.ips[0].dhcp.hosts[0].ip == "10.0.0.11"  # type: ignore[union-attr]
    modified = apply_update(
        BASE, "modify", "ip-dhcp-host", "<host mac='52:54:00:00:00:01' ip='10.0.0.12' name='x'/>"
    )
    assert modified.ips[0].dhcp.hosts[0].name == "x"  # type: ignore[union-attr]
    deleted = apply_update(BASE, "delete", "ip-dhcp-host", "<host mac='52:54:00:00:00:01'/>")
    assert deleted.ips[0].dhcp.hosts == []  # type: ignore[union-attr]
    assert len(BASE.ips[0].dhcp.hosts) == 1  # type: ignore[union-attr]  # the input is untouched


def test_range_dns_and_portgroup_sections() -> None:
    net = apply_update(BASE, "add", "ip-dhcp-range", "<range start='10.0.0.200' end='10.0.0.210'/>")
    assert len(net.ips[0].dhcp.ranges) == 2  # type: ignore[union-attr]
    net = apply_update(
        net, "add", "dns-host", "<host ip='10.0.0.60'><hostname>web</hostname></host>"
    )
    net = apply_update(
        net, "add", "dns-srv", "<srv service='http' protocol='tcp' target='web' port='80'/>"
    )
    net = apply_update(net, "add", "dns-txt", "<txt name='t' value='v'/>")
    net = apply_update(net, "delete", "portgroup", "<portgroup name='web'/>")
    assert net.dns is not None and len(net.dns.hosts) == 2 and net.dns.srvs and net.dns.txts
    assert net.portgroups == []


def test_ipv6_host_goes_to_the_ipv6_element() -> None:
    net = apply_update(BASE, "add", "ip-dhcp-host", "<host id='0:1:2' ip='fd00::9'/>")
    assert net.ips[1].dhcp is not None and net.ips[1].dhcp.hosts[0].ip == "fd00::9"


@pytest.mark.parametrize(
    ("command", "section", "xml", "error", "subject"),
    [
        (
            "add",
            "ip-dhcp-host",
            "<host mac='52:54:00:00:00:01' ip='10.0.0.13'/>",
            InvalidInput,
            "ip-dhcp-host",
        ),
        ("delete", "dns-txt", "<txt name='nope' value='x'/>", NotFound, "dns-txt"),
        ("add", "ip-dhcp-host", "<range start='1' end='2'/>", InvalidInput, "host"),
        ("add", "nonsense", "<host/>", InvalidInput, "section"),
        ("rename", "portgroup", "<portgroup name='x'/>", InvalidInput, "command"),
        (
            "add",
            "ip-dhcp-host",
            "<host mac='52:54:00:00:00:05' ip='10.0.0.5' bogus='1'/>",
            InvalidInput,
            None,
        ),
    ],
)
def test_bad_updates_name_the_problem(
    command: str, section: str, xml: str, error: type[Exception], subject: str | None
) -> None:
    with pytest.raises(error) as err:
        apply_update(BASE, command, section, xml)
    if subject is not None:
        assert subject in str(getattr(err.value, "subject", ""))


DNS = """<network><name>d</name><forward mode='nat' dev='eth1'><interface dev='eth1'/></forward>
  <dns><host ip='10.5.0.1'><hostname>host</hostname><hostname>gateway</hostname></host>
  <host ip='10.5.0.2'><hostname>shared</hostname></host>
  <host ip='fd00::2'><hostname>shared</hostname></host>
  <srv service='ldap' protocol='tcp' domain='a.example' target='.' port='389'/>
  <srv service='ldap' protocol='tcp' domain='b.example' target='.' port='389'/></dns>
  <ip address='10.5.0.1' prefix='24'><dhcp>
  <host mac='52:54:00:00:00:0a' name='web' ip='10.5.0.10'/></dhcp></ip></network>"""


def test_delete_names_an_entry_by_part_of_it_as_libvirt_does() -> None:
    base = parse_network(DNS)
    gone = apply_update(base, "delete", "dns-host", "<host><hostname>gateway</hostname></host>")
    assert gone.dns is not None and [h.ip for h in gone.dns.hosts] == ["10.5.0.2", "fd00::2"]
    with pytest.raises(InvalidInput, match="matches 2 entries"):
        apply_update(base, "delete", "dns-host", "<host><hostname>shared</hostname></host>")
    with pytest.raises(InvalidInput, match="matches 2 entries"):
        apply_update(base, "delete", "dns-srv", "<srv service='ldap'/>")
    one = apply_update(base, "delete", "dns-srv", "<srv domain='b.example'/>")
    assert one.dns is not None and [s.domain for s in one.dns.srvs] == ["a.example"]
    with pytest.raises(NotFound):
        apply_update(base, "delete", "dns-srv", "<srv protocol='udp'/>")
    with pytest.raises(InvalidInput, match="'tcp' or 'udp'"):
        apply_update(base, "delete", "dns-srv", "<srv protocol='pudding'/>")


def test_a_dhcp_host_must_be_complete_to_be_added_or_modified() -> None:
    base = parse_network(DNS)
    for command in ("modify", "add-last"):
        with pytest.raises(InvalidInput, match="needs its ip"):
            apply_update(base, command, "ip-dhcp-host", "<host mac='52:54:00:00:00:0a'/>")
    gone = apply_update(base, "delete", "ip-dhcp-host", "<host mac='52:54:00:00:00:0a'/>")
    assert gone.ips[0].dhcp is not None and gone.ips[0].dhcp.hosts == []


def test_forward_interfaces_are_added_and_deleted_with_dev_following_the_first() -> None:
    base = parse_network(DNS)
    added = apply_update(base, "add-first", "forward-interface", "<interface dev='eth47'/>")
    assert added.forward is not None
    assert (added.forward.dev, added.forward.interfaces) == ("eth47", ["eth47", "eth1"])
    gone = apply_update(base, "delete", "forward-interface", "<interface dev='eth1'/>")
    assert gone.forward is not None and (gone.forward.dev, gone.forward.interfaces) == (None, [])
    with pytest.raises(NotFound):
        apply_update(base, "delete", "forward-interface", "<interface dev='eth47'/>")
