"""Test helpers for virtnet and for backend authors: throw-away namespaces and traffic checks.

Enable the fixtures in a test suite with ``pytest_plugins = ["virtnet.testing.fixtures"]``.
Everything here shells out to ``ip``, ``ping`` and busybox on purpose: tests should check the
datapath with the tools an operator (or a guest) would use, not with virtnet's own code.
"""

from virtnet.testing import dhcpv6, frames
from virtnet.testing.guest import dhcp_lease, resolve, tcp_throughput
from virtnet.testing.netns import Lab, Namespace
from virtnet.testing.snapshot import snapshot
from virtnet.testing.traffic import can_ping, can_tcp

__all__ = [
    "Lab",
    "Namespace",
    "can_ping",
    "can_tcp",
    "dhcp_lease",
    "dhcpv6",
    "frames",
    "resolve",
    "snapshot",
    "tcp_throughput",
]
