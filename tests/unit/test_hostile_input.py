"""Definitions written to break things: every string field, the injections found in review,
values that are not addresses, oversized documents, and a fuzz of the parser.

The rule: a value is refused at define time with :class:`InvalidInput` naming its field, or it
is written inert (the generated dnsmasq files have the same options, line for line, as with a
harmless value).
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from virtnet.errors import Conflict, InvalidInput, VirtnetError
from virtnet.model import parse_network
from virtnet.model.validate import validate_network
from virtnet.services.dnsmasq_conf import (
    DnsmasqFiles,
    render_addn_hosts,
    render_conf,
    render_dhcp_hosts,
)

RICH = """<network><name>rich</name><uuid>6f1f4e5c-8a43-4e0f-9d1c-1a2b3c4d5e6f</uuid>
  <forward mode='nat'/><bridge name='vbrich'/><mac address='52:54:00:01:02:03'/>
  <domain name='example.lan'/>
  <dns>
    <forwarder addr='192.0.2.53'/><forwarder domain='corp.example' addr='192.0.2.54'/>
    <txt name='info' value='hello world'/>
    <srv service='ldap' protocol='tcp' domain='example.lan' target='dir.example.lan'
         port='389' priority='1' weight='5'/>
    <host ip='192.168.150.9'><hostname>printer</hostname></host>
  </dns>
  <ip address='192.168.150.1' prefix='24'>
    <tftp root='/srv/tftp'/>
    <dhcp><range start='192.168.150.100' end='192.168.150.200'/>
      <host mac='52:54:00:aa:00:01' name='web' ip='192.168.150.10'/>
      <bootp file='pxelinux.0' server='192.168.150.2'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00:150::1' prefix='64'>
    <dhcp><host id='0:1:0:1:2a:3b' name='six' ip='fd00:150::10'/></dhcp>
  </ip>
</network>"""

HOSTILE = ["x\ny", "x\rdhcp-option=6,6.6.6.6", "x#y", "x # y", "a=b", "a,b", "a%s%d", 'a"b',
           "a'b", "a\\b", "a\0b", "a\x7fb", " x", "x ", "x\n", "\u202ex"]  # fmt: skip
FILES = DnsmasqFiles(Path("/run/virtnet/dnsmasq/x"))


def rendered(net_xml: str) -> list[str]:
    net = parse_network(net_xml)
    validate_network(net)
    text = render_conf(net, "vbrich", FILES, "nobody", "nogroup")
    text += render_dhcp_hosts(net) + render_addn_hosts(net)
    return text.splitlines()


def option_shape(lines: list[str]) -> list[str]:
    """Each line's option name and number of fields: what an injection would change."""
    unquoted = [re.sub(r'"[^"]*"', '""', line) for line in lines]  # dnsmasq's quoting
    return [
        (line.split("=", 1)[0] if "=" in line else f"entry:{len(line.split())}")
        + f"/{line.count(',')}"
        for line in unquoted
    ]


BASELINE = option_shape(rendered(RICH))


def attribute_slots() -> list[tuple[str, str]]:
    """Every (element path, attribute) of the rich definition, and text nodes."""
    root = etree.fromstring(RICH.encode())
    slots = []
    for el in root.iter():
        path = root.getroottree().getpath(el)
        slots += [(path, name) for name in el.attrib]
        if el.text and el.text.strip():
            slots.append((path, ""))
    return slots


@pytest.mark.parametrize(("path", "attr"), attribute_slots())
def test_every_string_field_refuses_or_neutralises_hostile_values(path: str, attr: str) -> None:
    for value in HOSTILE:
        root = etree.fromstring(RICH.encode())
        el = root.getroottree().xpath(path)[0]
        if attr:
            el.set(attr, value.replace("\0", "")) if "\0" in value else el.set(attr, value)
        else:
            el.text = value.replace("\0", "")
        xml = etree.tostring(root).decode()
        try:
            lines = rendered(xml)
        except (InvalidInput, Conflict):
            continue
        # accepted: then written inert, the same options with the same number of fields
        assert option_shape(lines) == BASELINE, (path, attr, value)
        assert not any(line.startswith("dhcp-option=6,") for line in lines)


@pytest.mark.parametrize(
    ("fragment", "subject"),
    [
        # option injection found in review
        ("<dns><forwarder addr='fe80::1%lo&#10;dhcp-option=6,6.6.6.6'/></dns>", "forwarder"),
        (
            "<dns><host ip='fe80::1%x&#10;6.6.6.6 bank.example'><hostname>a</hostname></host>"
            "</dns>",
            "dns/host/@ip",
        ),
        (
            "<ip address='10.9.0.1' prefix='24'><dhcp><bootp file='a' server='10.9.0.2,x'/>"
            "</dhcp></ip>",
            "bootp/@server",
        ),
        (
            "<ip family='ipv6' address='fd00:9::1' prefix='64'><dhcp>"
            "<host id='00:02,ignore' ip='fd00:9::5'/></dhcp></ip>",
            "host/@id",
        ),
        # names and MACs with a trailing newline
        (
            "<ip address='10.9.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01&#10;' "
            "ip='10.9.0.5'/></dhcp></ip>",
            "host/@mac",
        ),
        (
            "<ip address='10.9.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' "
            "name='web&#10;' ip='10.9.0.5'/></dhcp></ip>",
            "host/@name",
        ),
        # not host addresses
        ("<ip address='224.1.1.1' prefix='24'/>", "ip/@address"),
        ("<ip address='0.0.0.1' prefix='24'/>", "ip/@address"),
        ("<ip address='255.255.255.255' prefix='32'/>", "ip/@address"),
        ("<ip family='ipv6' address='fe80::1' prefix='64'/>", "ip/@address"),
        (
            "<ip address='10.9.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' "
            "ip='10.9.0.0'/></dhcp></ip>",
            "host/@ip",
        ),
        (
            "<ip address='10.9.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01' "
            "ip='10.9.0.255'/></dhcp></ip>",
            "host/@ip",
        ),
        (
            "<ip address='10.9.0.1' prefix='24'><dhcp><range start='10.9.0.100' "
            "end='10.9.0.255'/></dhcp></ip>",
            "range",
        ),
        (
            "<ip address='10.9.0.1' prefix='24'><dhcp><host mac='00:00:00:00:00:00' "
            "ip='10.9.0.5'/></dhcp></ip>",
            "host/@mac",
        ),
        ("<bridge name='a%s%d'/>", "bridge/@name"),
        ("<bridge name='br,lo'/>", "bridge/@name"),
        ("<ip address='10.9.0.1' prefix='24'><tftp root='/srv,lo'/></ip>", "tftp/@root"),
    ],
)
def test_injections_and_non_addresses_are_refused(fragment: str, subject: str) -> None:
    xml = f"<network><name>n</name><forward mode='nat'/>{fragment}</network>"
    with pytest.raises(InvalidInput) as caught:
        validate_network(parse_network(xml))
    assert subject in (caught.value.subject or ""), caught.value
    assert "\n" not in str(caught.value)


def test_addresses_are_written_in_canonical_form() -> None:
    net = parse_network(
        "<network><name>n</name><ip family='ipv6' address='f0:0d::f0:0d' prefix='64'/></network>"
    )
    validate_network(net)
    assert net.ips[0].address == "f0:d::f0:d"


@pytest.mark.parametrize(
    "document",
    [
        "<network><name>n</name>" + "<x/>" * 200_000 + "</network>",
        "<network><name>n</name><description>" + "a" * (5 << 20) + "</description></network>",
    ],
    ids=["elements", "bytes"],
)
def test_oversized_definitions_are_refused_at_once(document: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"limit|more than"):
        parse_network(document)
    assert time.monotonic() - started < 1.0


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=300))
def test_fuzzed_text_only_ever_raises_virtnet_errors(text: str) -> None:
    with contextlib.suppress(VirtnetError):
        validate_network(parse_network("<network><name>f</name>" + text + "</network>"))


_UNQUOTABLE = re.compile(r"[<&']")
ATTRS = st.sampled_from(["address", "prefix", "mac", "name", "start", "end", "ip", "id", "dev"])
TAGS = st.sampled_from(["ip", "dhcp", "range", "host", "dns", "forwarder", "bridge", "forward"])


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> str:
    tag = draw(TAGS)
    attrs = draw(st.dictionaries(ATTRS, st.text(max_size=20), max_size=3))
    clean = {k: _UNQUOTABLE.sub("", v) for k, v in attrs.items() if v.isprintable()}
    quoted = " ".join(f"{k}='{v}'" for k, v in clean.items())
    kids = "" if depth > 2 else "".join(draw(st.lists(elements(depth + 1), max_size=3)))
    return f"<{tag} {quoted}>{kids}</{tag}>"


@settings(max_examples=1500, deadline=None)
@given(st.lists(elements(), max_size=4))
def test_fuzzed_structures_only_ever_raise_virtnet_errors(parts: list[str]) -> None:
    with contextlib.suppress(VirtnetError):
        validate_network(parse_network("<network><name>f</name>" + "".join(parts) + "</network>"))


UPDATE_TAGS = {
    "ip-dhcp-host": "host",
    "ip-dhcp-range": "range",
    "dns-host": "host",
    "dns-srv": "srv",
    "dns-txt": "txt",
    "forward-interface": "interface",
    "portgroup": "portgroup",
}
UPDATE_ATTRS = ["mac", "ip", "name", "id", "start", "end", "service", "protocol", "target",
                "port", "priority", "weight", "value", "dev", "domain"]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    command=st.sampled_from(["add", "add-first", "add-last", "delete", "modify", "bogus"]),
    section=st.sampled_from([*UPDATE_TAGS, "bogus"]),
    attrs=st.dictionaries(st.sampled_from(UPDATE_ATTRS), st.text(max_size=24), max_size=4),
    child=st.sampled_from(["", "<hostname>a</hostname>", "<hostname/>", "<x/>"]),
)
def test_fuzzed_update_snippets_only_ever_raise_virtnet_errors(
    command: str, section: str, attrs: dict[str, str], child: str
) -> None:
    from virtnet.model.update import apply_update

    tag = UPDATE_TAGS.get(section, "x")
    clean = {k: _UNQUOTABLE.sub("", v) for k, v in attrs.items() if v.isprintable()}
    snippet = f"<{tag} " + " ".join(f"{k}='{v}'" for k, v in clean.items()) + f">{child}</{tag}>"
    with contextlib.suppress(VirtnetError):
        updated = apply_update(parse_network(RICH), command, section, snippet)
        validate_network(updated)
        # accepted: then its files are written without injected lines
        net_lines = option_shape(rendered_net(updated))
        assert all(not line.startswith("dhcp-option=6,") for line in net_lines)


def rendered_net(net: object) -> list[str]:
    from virtnet.model.network import Network

    assert isinstance(net, Network)
    text = render_conf(net, "vbrich", FILES, "nobody", "nogroup")
    return (text + render_dhcp_hosts(net) + render_addn_hosts(net)).splitlines()
