"""The two steps this backend needs that virtnet's core does not have.

A vendor's step is a small frozen dataclass with ``describe``, ``undo`` and ``apply``. Both
change only the guest's link, which virtnet made and labelled, so they need no undo of their
own: the link's deletion (the core's ``CreateVeth``/``CreateTap`` undo) takes them along.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from virtnet.apply import ApplyContext
from virtnet.errors import Conflict
from virtnet.plan import Step, Undo
from virtnet.services.steps import services


@dataclass(frozen=True)
class RoutedLink(Step):
    """Make a guest's link a routed point-to-point one: answer ARP for the other guests
    (proxy ARP) and accept only packets whose source routes back through it (strict
    reverse-path filtering: the anti-spoofing of a network without L2)."""

    ifname: str

    def describe(self) -> str:
        return f"route for {self.ifname}: proxy ARP, strict reverse-path filter"

    def undo(self) -> Undo | None:
        return None  # per-link settings: they go with the link

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        # steps run on a thread inside the host's namespace, and /proc/sys/net shows the
        # namespace of the thread that opens it
        base = Path("/proc/sys/net/ipv4/conf")
        for name, value in (("proxy_arp", "1"), ("rp_filter", "1")):
            (base / self.ifname / name).write_text(value)


@dataclass(frozen=True)
class RouteToGuest(Step):
    """A host route to an address the guest declared (leases get theirs from dnsmasq)."""

    address: str
    ifname: str

    def describe(self) -> str:
        return f"route {self.address}/32 to {self.ifname}"

    def undo(self) -> Undo | None:
        return None  # goes with the link

    def repair(self, ctx: ApplyContext) -> None:
        with contextlib.suppress(Conflict):  # still there
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).netlink.add_link_route(f"{self.address}/32", self.ifname)
