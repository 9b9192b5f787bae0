"""virtnet's macvtap backend: libvirt's "direct" networks.

Guests attach straight to a physical NIC, without a host bridge: a macvtap per VM port (the
VM opens its character device), a macvlan moved into the namespace of a container port. The
forward mode is the kernel's macvlan mode: bridge (guests on one device reach each other
inside the host), private (they cannot), vepa (their traffic goes out to the switch and
back: a switch port with hairpin on), passthrough (one guest owns the device). Addressing
comes from the physical LAN: virtnet adds no addresses, DHCP or firewall.

Registered through the ``virtnet.drivers`` entry point like any vendor's backend, and written
against the core's backend API only.
"""

from virtnet_macvtap.plugin import MacvtapBackend

__version__ = "0.1.0"

#: The object the entry point names: pluggy registers it as the plugin.
backend = MacvtapBackend()

__all__ = ["MacvtapBackend", "__version__", "backend"]
