"""Drift the core finds for a backend that has no check hook: from its journal (a deleted
bridge, a bridge replaced by a namesake) and from its ports (a deleted port link)."""

from __future__ import annotations

from typing import Any

import pytest

from virtnet import hookimpl
from virtnet.backend import BackendInfo
from virtnet.model import ForwardMode, Network
from virtnet.model.port import AttachmentKind, NetworkPort
from virtnet.plan import Plan
from virtnet.services.steps import CreateBridge, CreateVeth, SetUp
from virtnet.testing.fixtures import needs_root
from virtnet.testing.world import World

pytestmark = [needs_root, pytest.mark.root]


class Bare:
    """A backend with no check hook: a bridge per network, a veth per port."""

    @hookimpl
    def virtnet_backend_describe(self) -> BackendInfo:
        return BackendInfo("bare", "0.1", "no check hook", frozenset({ForwardMode.ISOLATED}),
                           frozenset({AttachmentKind.VETH}))  # fmt: skip

    @hookimpl
    def virtnet_network_plan_start(self, network: Network) -> Plan:
        assert network.bridge is not None and network.bridge.name
        name = network.bridge.name
        return Plan([CreateBridge(name), SetUp(name)], {"bridge": name})

    @hookimpl
    def virtnet_port_plan_plug(self, port: NetworkPort, status: dict[str, Any]) -> Plan:
        a = port.attachment
        a.ifname = "vbare" + str(port.uuid)[:8]
        assert a.netns
        return Plan([CreateVeth(a.ifname, str(status["bridge"]), "eth0", a.netns),
                     SetUp(a.ifname)])  # fmt: skip


def test_a_backend_without_a_check_hook_still_sees_drift(world: World) -> None:
    world.vn.register(Bare())
    world.vn.create_network("<network><name>bare</name><bridge name='vbare0'/></network>",
                            backend="bare")  # fmt: skip
    _, port = world.plug("bare", "g")
    assert world.vn.check_network("bare") == []
    world.host.ip("link", "del", port.attachment.ifname or "")
    assert world.vn.check_network("bare") == [
        f"port {port.uuid}: its link {port.attachment.ifname} is missing"
    ]
    world.host.ip("link", "del", "vbare0")
    world.host.ip("link", "add", "vbare0", "type", "bridge")  # a namesake, not virtnet's
    found = world.vn.check_network("bare")
    assert "link vbare0 is no longer virtnet's (its label changed)" in found
    world.host.ip("link", "del", "vbare0")
    assert "link vbare0 is missing" in world.vn.check_network("bare")
