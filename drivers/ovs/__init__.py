"""virtnet's Open vSwitch backend.

Bridge mode onto an existing OVS bridge (``<virtualport type='openvswitch'/>``, libvirt's
semantics), and managed networks (nat, route, open, isolated) on an OVS bridge virtnet
creates, whose local internal port the core's shared recipe addresses and serves exactly as
on a Linux bridge. VLAN access ports and trunks come from OVS: the only backend that can tag
on a kernel without 802.1Q sub-interfaces. Everything goes through OVSDB transactions
(:mod:`virtnet.services.ovsdb`), never ``ovs-vsctl``.

Registered through the ``virtnet.drivers`` entry point like any vendor's backend, and written
against the core's backend API only.
"""

from virtnet_ovs.plugin import OvsBackend

__version__ = "0.1.0"

#: The object the entry point names: pluggy registers it as the plugin.
backend = OvsBackend()

__all__ = ["OvsBackend", "__version__", "backend"]
