"""Test helpers for virtnet and for backend authors: throw-away namespaces and traffic checks.

Enable the fixtures in a test suite with ``pytest_plugins = ["virtnet.testing.fixtures"]``.
Everything here shells out to ``ip`` and ``ping`` on purpose: tests should check the datapath
with the tools an operator would use, not with virtnet's own code.
"""

from virtnet.testing.netns import Lab, Namespace
from virtnet.testing.traffic import can_ping, can_tcp

__all__ = ["Lab", "Namespace", "can_ping", "can_tcp"]
