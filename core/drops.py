"""What ports' anti-spoofing guards dropped, and why, read back from the datapath.

The Linux bridge's nftables guard remembers each port's drops in dynamic sets, with the forged
source (:mod:`virtnet.services.guard_rules`); the Open vSwitch guard's drop rules carry
OpenFlow counters by the port's cookie (:mod:`virtnet.services.openflow`). Which one guards a
port is in its plug journal: the removal it recorded. Reads happen on request (``net-port-info``,
``net-port-list``, a metrics scrape), one per guard kind and bridge however many ports.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from virtnet.apply import Journal
from virtnet.errors import Unsupported
from virtnet.model import NetworkPort

if TYPE_CHECKING:
    from virtnet.api import Virtnet

Found = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Guard:
    """Where a port's drops are counted: ``nftables`` (keyed by the port's link) or an OVS
    bridge's name (keyed by the port's cookie), and the journal made when it was plugged."""

    journal: Journal
    where: str
    cookie: int | None

    def select(self, found: Found, port: NetworkPort) -> list[dict[str, Any]]:
        """This port's drops among ``found``, since it was plugged (a former port with the
        same link name leaves nftables records for up to an hour), each with its ``why``."""
        from virtnet.services.guard_rules import DROP_REASONS  # only here: not at start-up

        age = time.time() - self.journal.path.stat().st_ctime
        mine = [
            d for d in found.get(self.where, [])
            if (d.get("cookie") == self.cookie if self.cookie is not None
                else d["link"] == port.attachment.ifname)
            and d["seconds_ago"] <= age
        ]  # fmt: skip
        return [
            {k: v for k, v in d.items() if k != "cookie"}
            | {"why": d.get("why") or DROP_REASONS[d["reason"]].format(key=d["source"])}
            for d in mine
        ]


def guard_of(api: Virtnet, port: NetworkPort) -> Guard | None:
    """How the port's drops are counted (whichever guard removal its journal holds), or None."""
    if port.attachment.spoof_check is False or not port.uuid:
        return None
    journal = api.port_journal(port.uuid)
    for record in journal.records():
        if record.action == "core.firewall.port.remove":
            return Guard(journal, "nftables", None)
        if record.action == "core.ovs.guard.remove":
            return Guard(journal, f"{record.args['bridge']}", int(record.args["cookie"]))
    return None


def read(api: Virtnet, guards: set[Guard]) -> Found:
    """The drops of every guard kind in ``guards``: nftables' once, each OVS bridge once."""
    services = api.services
    found: Found = {}
    for where in {g.where for g in guards}:
        if where == "nftables":
            found[where] = services.call(services.firewall.drops)
        else:
            from virtnet.services import openflow  # only here: not at start-up

            found[where] = services.call(functools.partial(openflow.guard_drops, where))
    return found


def dropped_packets(api: Virtnet, network: str | None) -> dict[str, int]:
    names = [network] if network else [n.name for n in api.list_networks(inactive=False)]
    guarded = [
        (port, guard)
        for port in (port for name in names for port in api.list_ports(name))
        if (guard := guard_of(api, port)) is not None
    ]
    found = read(api, {guard for _, guard in guarded}) if guarded else {}
    return {
        port.uuid or "": sum(d["packets"] for d in guard.select(found, port))
        for port, guard in guarded
    }


def port_drops(api: Virtnet, uuid: str) -> list[dict[str, Any]]:
    port = api.get_port(uuid)
    if port.attachment.spoof_check is False:
        raise Unsupported("this port has no anti-spoofing (--no-spoof-check): it drops nothing")
    guard = guard_of(api, port)
    if guard is None:
        raise Unsupported("this port's backend keeps no count of what its guard drops")
    return guard.select(read(api, {guard}), port)
