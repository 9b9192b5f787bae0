"""What ``virtnet conformance linuxbridge`` needs beyond a bare host: a bridge of the host's
own for bridge mode (``<forward mode='bridge'/>`` attaches guests to a bridge virtnet does not
own). Registered in the ``virtnet.conformance`` entry-point group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from virtnet.testing.world import World


@contextmanager
def prepare(world: World) -> Iterator[dict[str, str]]:
    world.host.ip("link", "add", "extbr0", "type", "bridge")
    world.host.ip("link", "set", "extbr0", "up")
    yield {"bridge": "extbr0"}  # it goes with the world's namespace
