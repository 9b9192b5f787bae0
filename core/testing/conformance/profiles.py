"""The networks the conformance suite builds for each forward mode a backend claims.

Modes with a bridge of the network's own (nat, route, open, isolated) need nothing from the
host. The others attach to something that must exist first: direct modes (a macvtap
backend's bridge/private/vepa/passthrough) to a device the suite makes (``lower0``, a veth
whose far end is the outside namespace), bridge mode to a bridge the backend does not own,
which only the backend knows how to make: its conformance hook (entry-point group
``virtnet.conformance``) prepares one, or the mode is skipped, saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from virtnet.backend import BackendInfo
from virtnet.model.network import ForwardMode
from virtnet.model.port import AttachmentKind

LOWER = "lower0"  # the direct modes' forward device, made by the suite


@dataclass(frozen=True)
class Profile:
    """One network to build, and how its guests attach and get addresses."""

    mode: ForwardMode
    xml: str
    guest_kind: AttachmentKind  # the attachment used for traffic checks
    subnet: str | None = None  # "10.150.1": DHCP from .10-.50, the host at .1
    bridge: str | None = None  # the bridge the network makes (None: none of its own)
    static: tuple[str, ...] = field(default_factory=tuple)  # guests' addresses without DHCP


def subnet_for(mode: ForwardMode) -> str:
    return f"10.150.{list(ForwardMode).index(mode) + 1}"


def profile(info: BackendInfo, mode: ForwardMode, prepared: dict[str, str]) -> Profile | None:
    """The network for ``mode``, or None when this host cannot give the mode what it needs."""
    name = f"conf-{mode.value}"
    veth = AttachmentKind.VETH in info.attachments
    guest_kind = AttachmentKind.VETH if veth else AttachmentKind.MACVLAN
    if mode.has_own_bridge:
        net = subnet_for(mode)
        bridge = f"vcb{list(ForwardMode).index(mode)}"
        forward = "" if mode is ForwardMode.ISOLATED else f"<forward mode='{mode.value}'/>"
        xml = (
            f"<network><name>{name}</name>{forward}<bridge name='{bridge}'/>"
            f"<ip address='{net}.1' prefix='24'><dhcp><range start='{net}.10' end='{net}.50'/>"
            "</dhcp></ip></network>"
        )
        return Profile(mode, xml, guest_kind, net, bridge)
    net = subnet_for(mode)
    static = (f"{net}.21", f"{net}.22")
    if AttachmentKind.MACVLAN in info.attachments and mode is not ForwardMode.HOSTDEV:
        xml = (
            f"<network><name>{name}</name><forward mode='{mode.value}'>"
            f"<interface dev='{LOWER}'/></forward></network>"
        )
        return Profile(mode, xml, AttachmentKind.MACVLAN, static=static)
    if mode is ForwardMode.BRIDGE and prepared.get("bridge"):
        xml = (
            f"<network><name>{name}</name><forward mode='bridge'/>"
            f"<bridge name='{prepared['bridge']}'/>{prepared.get('bridge_xml', '')}</network>"
        )
        return Profile(mode, xml, guest_kind, static=static)
    return None


__all__ = ["LOWER", "Profile", "profile", "subnet_for"]
