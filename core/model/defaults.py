"""What libvirt fills in when a network is defined: uuid, bridge name, STP defaults, MAC.

Kept apart from parsing so that ``parse`` followed by ``format`` returns what was written,
while ``define`` stores (and ``dumpxml`` shows) what libvirt would.
"""

from __future__ import annotations

import random
import uuid as uuidlib
from collections.abc import Collection

from virtnet.model.network import Bridge, Network

MAC_PREFIX = "52:54:00"  # the prefix QEMU/KVM guests and libvirt bridges use


def random_mac(taken: Collection[str] = ()) -> str:
    """A locally unique 52:54:00:xx:xx:xx address not in ``taken``."""
    while True:
        mac = MAC_PREFIX + "".join(f":{random.randrange(256):02x}" for _ in range(3))
        if mac not in taken:
            return mac


def next_bridge_name(taken: Collection[str], template: str = "virbr%d") -> str:
    """libvirt's rule: the lowest ``virbrN`` no other network uses."""
    n = 0
    while template % n in taken:
        n += 1
    return template % n


#: The STP setting a bridge virtnet owns gets when its definition says none. Off: such a
#: bridge joins only guests' ports (no uplink is enslaved in nat, route, open or isolated
#: mode), so only a guest bridging two of its own ports could make a loop; with STP on, every
#: new port waits the kernel's minimum forward delay (2 s listening + 2 s learning) before a
#: single frame passes. ``stp='on'`` in the XML keeps libvirt's behaviour, delay and all.
STP_DEFAULT = False


def complete_network(
    net: Network, taken_bridges: Collection[str] = (), taken_macs: Collection[str] = ()
) -> Network:
    """Fill in, in place, the values libvirt generates on define; returns ``net``."""
    if not net.uuid:
        net.uuid = str(uuidlib.uuid4())
    fwd = net.forward
    if fwd is not None:
        if fwd.dev and not fwd.interfaces:
            fwd.interfaces = [fwd.dev]
        elif fwd.interfaces and not fwd.dev:
            fwd.dev = fwd.interfaces[0]
    if net.mode.has_own_bridge:
        bridge = net.bridge or Bridge()
        if not bridge.name or "%d" in bridge.name:
            bridge.name = next_bridge_name(taken_bridges, bridge.name or "virbr%d")
        if bridge.stp is None:  # libvirt: on. Why virtnet differs: docs/xml-reference.md
            bridge.stp = STP_DEFAULT
        if bridge.delay is None:
            bridge.delay = 0
        net.bridge = bridge
        if not net.mac:
            net.mac = random_mac(taken_macs)
    return net
