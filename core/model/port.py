"""A network port: one guest NIC's connection to a network (libvirt's ``<networkport>``).

The request half (owner, mac, portgroup, vlan, virtualport, bandwidth, isolation) comes from the
user or the embedding stack; the result half (``plug``, ``attachment``) is filled in by the
backend that plugged the port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from virtnet.model.network import Bandwidth, VirtualPort, Vlan


class AttachmentKind(StrEnum):
    """How the guest side of a port is made."""

    TAP = "tap"  # a persistent tap for a VM monitor (QEMU -netdev tap,ifname=...)
    VETH = "veth"  # a veth pair whose peer lives in the guest's network namespace
    MACVTAP = "macvtap"  # a macvtap link; the VM opens its /dev/tapN character device
    MACVLAN = "macvlan"  # a macvlan link moved into the guest's network namespace
    NONE = "none"  # the caller brings its own link (libvirt's usual case)


@dataclass
class PortOwner:
    name: str
    uuid: str


@dataclass
class Attachment:
    """What the guest needs to use the port, and what virtnet made for it."""

    kind: AttachmentKind = AttachmentKind.NONE
    ifname: str | None = None  # the host-side link (tap, veth end, macvtap)
    netns: str | None = None  # the guest's network namespace, for veth/macvlan
    guest_ifname: str | None = None  # the link's name inside the guest namespace
    owner_uid: int | None = None  # the tap's owner, so an unprivileged QEMU may open it
    device: str | None = None  # a character device to open (macvtap's /dev/tapN)
    spoof_check: bool | None = None  # False: no anti-spoofing on this port (default: on)
    #: static addresses the guest declares (like Neutron's fixed IPs, nwfilter's IP): its
    #: anti-spoofing guard allows them as sources, as it allows leases and reservations
    addresses: list[str] = field(default_factory=list)
    #: True: the port goes when no process holds its tap open any more, after one did (a
    #: port made for a VM's bridge helper: it ends with the VM). Taps only.
    release_on_close: bool | None = None


@dataclass
class Plug:
    """libvirt's ``<plug>``: where the port was connected on the host side."""

    type: str  # "network" (a bridge virtnet owns), "bridge" (a host bridge), "direct"
    bridge: str | None = None
    mac_table_manager: str | None = None
    dev: str | None = None
    mode: str | None = None


@dataclass
class NetworkPort:
    network: str
    uuid: str | None = None
    owner: PortOwner | None = None
    mac: str | None = None
    portgroup: str | None = None
    virtualport: VirtualPort | None = None
    bandwidth: Bandwidth | None = None
    vlan: Vlan | None = None
    isolated: bool | None = None
    trust_guest_rx_filters: bool | None = None
    plug: Plug | None = None
    attachment: Attachment = field(default_factory=Attachment)
