"""libvirt's <networkport> XML: round trip, libvirt's element order, errors."""

from __future__ import annotations

import pytest

from virtnet.errors import InvalidInput
from virtnet.model.port_xml import format_port, parse_port

PORT = """\
<networkport>
  <uuid>7f1a2b3c-4d5e-4f60-8172-8394a5b6c7d8</uuid>
  <owner>
    <name>guest-a</name>
    <uuid>1a2b3c4d-5e6f-4071-8293-a4b5c6d7e8f9</uuid>
  </owner>
  <group>web</group>
  <mac address='52:54:00:7b:1c:2d'/>
  <virtualport type='openvswitch'>
    <parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/>
  </virtualport>
  <bandwidth>
    <inbound average='1000' peak='2000' burst='512'/>
  </bandwidth>
  <vlan>
    <tag id='10'/>
  </vlan>
  <port isolated='yes'/>
  <rxfilters trustGuest='no'/>
  <plug type='network' bridge='virbr0' macTableManager='kernel'/>
  <virtnet:attachment xmlns:virtnet='https://virtnet.dev/xmlns/attachment/1' kind='veth' ifname='vnet3' netns='guest-a' guestIfname='eth0'/>
</networkport>
"""


def test_port_round_trips_in_libvirts_order() -> None:
    assert format_port(parse_port(PORT, "net")) == PORT


def test_minimal_port() -> None:
    port = parse_port("<networkport><mac address='52:54:00:00:00:01'/></networkport>", "n")
    assert port.mac == "52:54:00:00:00:01" and port.uuid is None and port.network == "n"


@pytest.mark.parametrize(
    ("xml", "subject"),
    [
        ("<networkport><uuid>x</uuid></networkport>", "networkport/uuid"),
        (
            "<networkport><mac address='01:00:00:00:00:01'/></networkport>",
            "networkport/mac/@address",
        ),
        ("<networkport><owner><name>a</name></owner></networkport>", "networkport/owner"),
        ("<networkport><plug type='teleport'/></networkport>", "networkport/plug/@type"),
        ("<networkport><whatever/></networkport>", "networkport/whatever"),
    ],
)
def test_bad_port_xml_names_the_field(xml: str, subject: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_port(xml, "n")
    assert caught.value.subject == subject
