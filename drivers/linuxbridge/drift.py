"""Drift: compare a running network with the host, read only."""

from __future__ import annotations

from typing import Any

from virtnet.backend import Host
from virtnet.model.network import Network
from virtnet.services import Services
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.firewall_rules import network_rules


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
        rules = network_rules(net, bridge)
        if rules is not None:
            problems += services.firewall.network_drift(rules)
        files = status.get("dnsmasq")
        if isinstance(files, dict):
            dnsmasq = DnsmasqFiles.from_dict(files)
            if services.dnsmasq.pid(dnsmasq) is None:
                problems.append(f"dnsmasq ({dnsmasq.conf}) is not running")
    return problems
