"""virtnet's Linux bridge backend: libvirt's classic datapath.

Registered through the ``virtnet.drivers`` entry point exactly as a vendor's backend would be,
and written against the core's public API only (``virtnet.hookspecs``, ``virtnet.backend``,
``virtnet.model``, ``virtnet.services``). It owns the datapath (a kernel bridge and the guests'
taps and veths); addresses, firewall and dnsmasq come from the core's shared recipes.
"""

from virtnet_linuxbridge.plugin import LinuxBridgeBackend

__version__ = "0.1.0"

#: The object the entry point names: pluggy registers it as the plugin.
backend = LinuxBridgeBackend()

__all__ = ["LinuxBridgeBackend", "__version__", "backend"]
