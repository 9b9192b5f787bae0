"""What ``virtnet conformance ovs`` needs beyond a bare host: an Open vSwitch of the world's
own (a private ovsdb-server and ovs-vswitchd in its host namespace, userspace datapath), and
an OVS bridge the host owns for bridge mode. Registered in the ``virtnet.conformance``
entry-point group."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from virtnet.testing.ovs import OvsServer
from virtnet.testing.world import World


@contextmanager
def prepare(world: World) -> Iterator[dict[str, str]]:
    server = OvsServer(world.host).start()
    saved = os.environ.get("VIRTNET_OVSDB")
    os.environ["VIRTNET_OVSDB"] = server.remote  # read when the world's services first need it
    try:
        server.vsctl("add-br", "ovsext0", "--", "set", "bridge", "ovsext0",
                     "datapath_type=netdev")  # fmt: skip
        world.host.ip("link", "set", "ovsext0", "up")
        yield {"bridge": "ovsext0", "bridge_xml": "<virtualport type='openvswitch'/>"}
    finally:
        for row in world.vn.list_networks(inactive=False):  # before the switch goes
            world.vn.destroy_network(row.name)
        server.stop()
        if saved is None:
            os.environ.pop("VIRTNET_OVSDB", None)
        else:
            os.environ["VIRTNET_OVSDB"] = saved
