"""Bandwidth limits with tc: htb on a link's egress, and on an ifb for its ingress.

libvirt's ``<bandwidth>`` counts rates in kilobytes per second and bursts in kibibytes (it
hands them to tc as ``kbps`` and ``kb``). On a guest port, ``inbound`` is traffic towards the
guest, which leaves the host-side link (its egress); ``outbound`` is what the guest sends,
which arrives on the host-side link's ingress. This kernel has no ``police`` action, so
ingress traffic is redirected (u32 match-all + mirred) to an ifb device and shaped on the
ifb's egress with htb, which also gives ``peak`` a meaning there.
"""

from __future__ import annotations

import contextlib

from virtnet.model.network import Rate
from virtnet.ownership import owns
from virtnet.services.netlink import Netlink

ETH_P_ALL = 0x0003
ROOT = 0x10000  # 1:
CLASS = 0x10001  # 1:1
INGRESS = 0xFFFF0000  # ffff:


def _htb(nl: Netlink, ifname: str, rate: Rate) -> None:
    average = rate.average or rate.peak or 0
    rate_bits = f"{average * 8000}bit"
    ceil_bits = f"{(rate.peak or average) * 8000}bit"
    burst = (rate.burst or max(average // 8, 2)) * 1024
    nl.tc("add", "htb", ifname, ROOT, default=1)
    nl.tc(
        "add-class",
        "htb",
        ifname,
        CLASS,
        parent=ROOT,
        rate=rate_bits,
        ceil=ceil_bits,
        burst=burst,
        cburst=burst,
    )


def shape_egress(nl: Netlink, ifname: str, rate: Rate) -> None:
    _htb(nl, ifname, rate)


def shape_ingress(nl: Netlink, ifname: str, ifb: str, rate: Rate, label: str | None = None) -> None:
    nl.create_ifb(ifb, label)
    nl.set_up(ifb)
    ifb_index = nl.require(ifb)
    nl.tc("add", "ingress", ifname, INGRESS)
    nl.tc(
        "add-filter",
        "u32",
        ifname,
        parent=INGRESS,
        protocol=ETH_P_ALL,
        prio=1,
        keys=["0x0/0x0+0"],
        target=CLASS,
        action={
            "kind": "mirred",
            "direction": "egress",
            "action": "redirect",
            "ifindex": ifb_index,
        },
    )
    _htb(nl, ifb, rate)


def unshape(nl: Netlink, ifname: str, ifb: str | None, owner: str | None) -> None:
    """Remove what the shaping functions added; tolerates a link that is already gone, and
    leaves the qdiscs of a link that is not ``owner``'s (its own link went, a namesake came)."""
    if nl.index(ifname) is not None and owns(owner, nl.label(ifname)):
        for kind, handle in (("htb", ROOT), ("ingress", INGRESS)):
            with contextlib.suppress(Exception):  # not there: nothing to undo
                nl.tc("del", kind, ifname, handle)
    if ifb:
        nl.delete(ifb, owner)
