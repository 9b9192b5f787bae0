"""Ownership labels: how virtnet knows, on the host itself, which objects are its own.

Names are not enough. A bridge called ``virbr0`` may be libvirt's, a container runtime's or
an operator's; a step that failed because the name was taken must not be undone by deleting
that bridge, and a collector sweeping up after a crash must not take it either. So every
object virtnet makes carries a label naming the network (and port) it belongs to, where the
host keeps it with the object:

=====================  ==========================================================
links (bridge, tap,    the link's alias (``IFLA_IFALIAS``, ``ip link show`` prints
veth, macvtap, ifb)    it): ``virtnet/<scope>/net=<uuid>[/port=<uuid>]``; until it is
                       on, link group ``BIRTH_GROUP`` (:mod:`virtnet.services.netlink`)
Open vSwitch bridges   ``external_ids:virtnet-owner`` with the same label
and ports
routes                 the route's protocol (:data:`ROUTE_PROTOCOL`)
OpenFlow rules         the cookie's top 16 bits (:data:`COOKIE_TAG`)
nftables               virtnet's own tables (``inet virtnet``, ``bridge virtnet``)
dnsmasq                its pid file and command line (``--conf-file`` under the run dir)
files                  virtnet's run and state directories
=====================  ==========================================================

The scope names the virtnet instance (8 hex digits of its state directory's path): two
embedders with state of their own in one namespace never take each other's objects for
orphans. Undo actions remove an object only when its label is the one the journal recorded,
so a foreign object with the same name survives a failed start bit for bit; ``virtnet gc``
removes labelled objects of its own scope that no record owns, and never looks at others.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PREFIX = "virtnet/"
#: The routing protocol number virtnet's routes carry (``ip route`` shows ``proto 176``);
#: not in iproute2's rt_protos (which names 186-192 for routing daemons), like the numbers
#: other daemons pick for themselves.
ROUTE_PROTOCOL = 176
#: The external_ids key of virtnet's Open vSwitch bridges and ports.
OVS_OWNER_KEY = "virtnet-owner"
#: OpenFlow cookies of virtnet's rules carry this in their top 16 bits ("vn").
COOKIE_TAG = 0x766E
COOKIE_TAG_SHIFT = 48

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_LABEL = re.compile(
    rf"virtnet/(?:(?P<scope>[0-9a-f]{{8}})/)?net=(?P<net>{_UUID})(?:/port=(?P<port>{_UUID}))?"
)


@dataclass(frozen=True)
class Owner:
    """The network (and port) an object belongs to."""

    network: str
    port: str | None = None
    scope: str | None = None  # the virtnet instance (:func:`scope_of`); None: unscoped

    @property
    def label(self) -> str:
        text = PREFIX + (f"{self.scope}/" if self.scope else "") + f"net={self.network}"
        return f"{text}/port={self.port}" if self.port else text

    def __str__(self) -> str:
        return self.label


def parse_label(text: str | None) -> Owner | None:
    """The owner a label names, or None for anything that is not one of virtnet's labels."""
    found = _LABEL.fullmatch(text or "")
    if found is None:
        return None
    return Owner(found["net"], found["port"], found["scope"])


def scope_of(state_dir: Path) -> str:
    """The scope of the virtnet whose state lives in ``state_dir``: 8 hex digits of a hash
    of its path (stable across runs, different for two embedders' private states)."""
    return hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:8]


def owns(expected: str | None, found: str | None) -> bool:
    """Whether an object labelled ``found`` may be removed by an undo recorded as ``expected``.

    ``expected`` None is a journal written before labels existed: then any virtnet label
    will do, and an unlabelled object is still left alone. A network's label owns its ports'
    objects too (a network's teardown removes what its ports left).
    """
    owner = parse_label(found)
    if owner is None:
        return False
    if expected is None:
        return True
    return found == expected or (found or "").startswith(expected + "/")


def cookie(value: int) -> int:
    """``value`` (48 bits, e.g. a MAC) as a virtnet-tagged OpenFlow cookie."""
    return (COOKIE_TAG << COOKIE_TAG_SHIFT) | (value & ((1 << COOKIE_TAG_SHIFT) - 1))


__all__ = [
    "COOKIE_TAG",
    "OVS_OWNER_KEY",
    "PREFIX",
    "ROUTE_PROTOCOL",
    "Owner",
    "cookie",
    "owns",
    "parse_label",
]
