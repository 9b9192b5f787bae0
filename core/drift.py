"""Drift the core finds by itself, whatever the backend: from the undo journal and the ports.

A backend's ``virtnet_network_check`` knows its datapath; but a backend without one, or with
a partial one, would report "in sync" over a deleted bridge. The journal already lists what
the network's start made (each record names an object and the label it carries), so the core
checks those objects are still there and still virtnet's; and every port's host-side link
must exist. Read only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from virtnet.model.port import NetworkPort
from virtnet.ownership import owns
from virtnet.plan import Undo
from virtnet.services.dnsmasq_conf import DnsmasqFiles

if TYPE_CHECKING:
    from virtnet.services import Services


Finding = tuple[str, str]  # (the object's name, the line to show)


def journal_drift(services: Services, records: list[Undo]) -> list[Finding]:
    """One finding per journalled object that is gone, or is no longer labelled virtnet's."""
    problems: list[Finding] = []
    for record in records:
        args = record.args
        if record.action == "core.link.delete":
            name = str(args["ifname"])
            if services.netlink.index(name) is None:
                problems.append((name, f"link {name} is missing"))
            elif not owns(record.owner, services.netlink.label(name)):
                problems.append((name, f"link {name} is no longer virtnet's (its label changed)"))
        elif record.action == "core.ovs.bridge.delete":
            name = str(args["name"])
            if services.ovsdb.bridge(name) is None:
                problems.append((name, f"Open vSwitch bridge {name} is missing"))
        elif record.action == "core.dnsmasq.stop":
            files = DnsmasqFiles.from_dict(args)
            if services.dnsmasq.pid(files) is None:
                problems.append(("dnsmasq", f"dnsmasq ({files.conf}) is not running"))
    return problems


def port_drift(services: Services, ports: list[NetworkPort]) -> list[Finding]:
    """One line per port whose host-side link is gone (one link dump for all of them)."""
    wanted = {p.attachment.ifname: p for p in ports if p.attachment.ifname}
    if not wanted:
        return []
    present = set(services.netlink.names())
    return [
        (name, f"port {port.uuid}: its link {name} is missing")
        for name, port in sorted(wanted.items())
        if name not in present
    ]


def merge(backend: list[str], core: list[Finding]) -> list[str]:
    """The backend's lines, then the core's about objects the backend did not mention."""
    said = " ".join(backend)
    return backend + [line for name, line in core if name not in said]


__all__ = ["journal_drift", "merge", "port_drift"]
