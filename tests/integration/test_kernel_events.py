"""The daemon's notification parsers read what a real kernel sends (rtnetlink, nftables)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from virtnet.daemon import kernel_events as ke
from virtnet.services.netlink import in_namespace
from virtnet.testing import Namespace
from virtnet.testing.fixtures import needs_root

pytestmark = [needs_root, pytest.mark.root]


def _sockets(ns: Namespace) -> tuple[object, object]:
    def make() -> tuple[object, object]:
        import socket

        return (
            ke.netlink_socket(socket.NETLINK_ROUTE, ke.RTMGRP_LINK),
            ke.netlink_socket(ke.NETLINK_NETFILTER, 1 << (ke.NFNLGRP_NFTABLES - 1)),
        )

    return in_namespace(ns.name, lambda _nl: make())


def test_link_and_nftables_notifications_name_what_they_hit(
    host_ns: Namespace, tmp_path: Path
) -> None:
    rtnl, nft = _sockets(host_ns)
    key = uuid.uuid4().hex
    host_ns.ip("link", "add", "evbr0", "type", "bridge")
    ruleset = tmp_path / "ruleset.nft"
    ruleset.write_text(f"""
        table inet virtnet {{
          set same {{ type ifname . ifname; flags interval; }}
          chain forward {{ type filter hook forward priority 0; iifname . oifname @same accept; }}
          chain n{key}_nat4 {{ accept; }}
        }}
        table inet other {{ chain n{uuid.uuid4().hex}_x {{ accept; }}; }}
        add element inet virtnet same {{ "evbr0" . "evbr0" comment "n{key}" }}
    """)  # fmt: skip
    host_ns.exec("nft", "-f", str(ruleset))
    ke.drain(nft)  # additions are not drift
    host_ns.ip("link", "del", "evbr0")
    links = [n for d in ke.drain(rtnl)[0] for n in ke.link_changes(d)]  # type: ignore[arg-type]
    assert "evbr0" in links
    # a network's element names it by its comment, a chain of its own by its name
    for sabotage in (
        ["delete", "element", "inet", "virtnet", "same", "{", '"evbr0" . "evbr0"', "}"],
        ["flush", "chain", "inet", "virtnet", f"n{key}_nat4"],
    ):
        host_ns.exec("nft", *sabotage)
        host_ns.exec("nft", "add", "table", "inet", "other")
        host_ns.exec("nft", "delete", "table", "inet", "other")  # not virtnet's: ignored
        datagrams, lost = ke.drain(nft)  # type: ignore[arg-type]
        hits = [ke.nft_deletions(d, "virtnet") for d in datagrams]
        assert not lost
        assert {k for h in hits for k in h.networks} == {key}, sabotage
        assert not any(h.unattributed for h in hits)
    host_ns.exec("nft", "flush", "chain", "inet", "virtnet", "forward")  # a base chain
    hits = [ke.nft_deletions(d, "virtnet") for d in ke.drain(nft)[0]]  # type: ignore[arg-type]
    assert any(h.unattributed for h in hits)
    host_ns.exec("nft", "delete", "table", "inet", "virtnet")
