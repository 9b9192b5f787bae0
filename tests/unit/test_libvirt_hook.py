"""The libvirt hook's reading of a domain: which interfaces go on which virtnet network."""

from __future__ import annotations

import pytest

from virtnet.libvirt_hook import HookError, main, read_domain

META = """<metadata><virtnet:interfaces xmlns:virtnet="https://virtnet.dev/xmlns/libvirt/1">
  <virtnet:interface dev="vnv0" network="lan" portgroup="web"/></virtnet:interfaces></metadata>"""


def dom(interface: str, meta: str = META) -> str:
    return (f"<domain><name>d</name><uuid>0f0e0d0c-0b0a-0908-0706-050403020100</uuid>{meta}"
            f"<devices>{interface}<interface type='network'><source network='x'/></interface>"
            "</devices></domain>")  # fmt: skip


def test_the_metadata_names_the_network_and_the_interface_gives_the_mac() -> None:
    iface = "<interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='vnv0' managed='no'/></interface>"
    name, uuid, [want] = read_domain(dom(iface))
    assert (name, want.dev, want.network, want.portgroup, want.mac) == (
        "d", "vnv0", "lan", "web", "52:54:00:00:00:01",
    )  # fmt: skip
    assert want.port_uuid(uuid) == read_domain(dom(iface))[2][0].port_uuid(uuid)  # stable
    assert read_domain(dom(iface, meta=""))[2] == []  # no metadata: not virtnet's domain


@pytest.mark.parametrize(
    ("interface", "said"),
    [
        (
            "<interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='vnv0'/></interface>",
            "managed='no'",
        ),
        (
            "<interface type='bridge'><mac address='52:54:00:00:00:01'/><target dev='vnv0' managed='no'/></interface>",
            "type='ethernet'",
        ),
        (
            "<interface type='ethernet'><target dev='vnv0' managed='no'/></interface>",
            "<mac address",
        ),
    ],
)
def test_an_interface_virtnet_cannot_serve_is_refused_saying_why(interface: str, said: str) -> None:
    with pytest.raises(HookError, match=said):
        read_domain(dom(interface))


def test_other_steps_of_a_domains_life_do_nothing() -> None:
    assert main(["d", "started", "begin", "-"]) == 0  # reads nothing, asks nobody
