"""virtnet's OVN backend: networks that span hosts, served by OVN.

virtnet grows no control plane and no tunnels of its own here: it writes its model into
OVN's northbound database (a logical switch per network; a logical router, SNAT and a gateway
chassis for nat and route; OVN's native DHCP and DNS instead of a dnsmasq per network; port
security for anti-spoofing) and plugs each guest's link into the local integration bridge
with ``external_ids:iface-id``, after which ``ovn-controller`` on every chassis does the rest.
Definitions live in the northbound database too (:class:`virtnet_ovn.catalog.OvnCatalog`),
so every host sees the same networks. See docs/ovn.md.

Registered through the ``virtnet.drivers`` entry point like any vendor's backend, and written
against the core's backend API only.
"""

from virtnet_ovn.plugin import OvnBackend

__version__ = "0.1.0"

#: The object the entry point names: pluggy registers it as the plugin.
backend = OvnBackend()

__all__ = ["OvnBackend", "__version__", "backend"]
