"""Drift: compare a running network with the host, read only."""

from __future__ import annotations

from typing import Any

from virtnet.backend import Host
from virtnet.model.network import Network
from virtnet.services import Services
from virtnet.services.firewall_rules import network_rules
from virtnet.services.recipes import l3_drift


def check(net: Network, host: Host, status: dict[str, Any]) -> list[str]:
    return Services.once(host, _check, net, status)


def _check(services: Services, net: Network, status: dict[str, Any]) -> list[str]:
    bridge = str(status["bridge"])
    nl = services.netlink
    problems = []
    kind, up = nl.link_state(bridge)
    if kind is None:
        problems.append(f"bridge {bridge} is missing")
    elif status.get("owned") and not up:
        problems.append(f"bridge {bridge} is down")
    if status.get("owned"):
        problems += l3_drift(services, network_rules(net, bridge), status)
    return problems
