"""Where an OVN network meets the physical network: ``<ovn:uplink>`` in the network's
``<metadata>``.

libvirt's XML names a host device for ``<forward dev=>``; an OVN network has no host of its
own, so what it needs instead is a provider network that some chassis reach through a bridge
mapping (``ovn-bridge-mappings=physnet1:br-ex``), the router's address on it, the next hop,
and which chassis carry the gateway (highest priority first)::

  <metadata>
    <ovn:uplink xmlns:ovn='https://virtnet.dev/xmlns/ovn/1' physnet='physnet1'
                address='198.51.100.254/24' gateway='198.51.100.1' chassis='hv3 hv2'/>
  </metadata>

nat and route networks use all four; a bridge-mode network needs only ``physnet`` (its guests
sit on the provider network itself, through a localnet port).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from virtnet.errors import InvalidInput
from virtnet.model.network import Network

OVN_NS = "https://virtnet.dev/xmlns/ovn/1"
SUBJECT = "network/metadata/ovn:uplink"


@dataclass(frozen=True)
class Uplink:
    physnet: str
    address: ipaddress.IPv4Interface | None = None
    gateway: ipaddress.IPv4Address | None = None
    chassis: tuple[str, ...] = ()


def parse_uplink(network: Network) -> Uplink | None:
    if not network.metadata or OVN_NS not in network.metadata:
        return None
    from lxml import etree

    found = list(etree.fromstring(f"<m>{network.metadata}</m>").iter(f"{{{OVN_NS}}}uplink"))
    if not found:
        return None
    if len(found) > 1:
        raise InvalidInput("more than one uplink", subject=SUBJECT)
    element = found[0]
    physnet = (element.get("physnet") or "").strip()
    if not physnet or not physnet.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput(f"physnet {physnet!r}: a provider network name", subject=SUBJECT)
    try:
        address = (
            ipaddress.IPv4Interface(element.get("address")) if element.get("address") else None
        )
        gateway = ipaddress.IPv4Address(element.get("gateway")) if element.get("gateway") else None
    except ValueError as exc:
        raise InvalidInput(str(exc), subject=SUBJECT) from None
    if address is not None and "/" not in str(element.get("address")):
        raise InvalidInput("address needs a prefix length (198.51.100.254/24)", subject=SUBJECT)
    if gateway is not None and address is not None and gateway not in address.network:
        raise InvalidInput(f"gateway {gateway} is not in {address.network}", subject=SUBJECT)
    chassis = tuple((element.get("chassis") or "").split())
    if any(not c.isprintable() or len(c) > 64 for c in chassis):
        raise InvalidInput("chassis: names separated by spaces", subject=SUBJECT)
    return Uplink(physnet, address, gateway, chassis)
