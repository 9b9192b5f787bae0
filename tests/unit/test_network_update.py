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
