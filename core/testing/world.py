"""A small world for backend tests: a host namespace with an uplink to an "outside" peer.

    [guest ns]--veth/tap--[bridge]  host ns  eth0 203.0.113.1 ---- 203.0.113.2 eth0  [outside]

``World.vn`` is a :class:`~virtnet.api.Virtnet` acting in the host namespace (the test process
itself never moves). The outside peer has no route to guest subnets unless a test adds one,
as an upstream router would for a routed network.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from virtnet.api import Virtnet
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing.netns import Lab, Namespace

UPLINK_HOST = "203.0.113.1"
UPLINK_PEER = "203.0.113.2"


@dataclass
class World:
    lab: Lab
    host: Namespace
    outside: Namespace
    vn: Virtnet
    run_dir: Path

    def guest(self, role: str) -> Namespace:
        return self.lab.netns(role)

    def plug(
        self, network: str, role: str, mac: str | None = None, **port: object
    ) -> tuple[Namespace, NetworkPort]:
        """A new guest namespace with a veth port on ``network`` (its end is ``eth0``)."""
        guest = self.guest(role)
        attachment = Attachment(
            kind=AttachmentKind.VETH,
            netns=guest.name,
            spoof_check=port.pop("spoof_check", None),  # type: ignore[arg-type]
        )
        made = self.vn.create_port(
            network,
            NetworkPort(network=network, mac=mac, attachment=attachment, **port),  # type: ignore[arg-type]
        )
        return guest, made


@contextmanager
def make_world(lab: Lab, run_dir: Path) -> Iterator[World]:
    host, outside = lab.netns("host"), lab.netns("out")
    lab.cable(host, "eth0", outside, "eth0")
    lab.address(host, "eth0", f"{UPLINK_HOST}/24")
    lab.address(outside, "eth0", f"{UPLINK_PEER}/24")
    vn = Virtnet(state_dir=run_dir / "state", run_dir=run_dir / "run", netns=host.name)
    try:
        yield World(lab, host, outside, vn, run_dir / "run")
    finally:
        for row in vn.list_networks(inactive=False):
            vn.destroy_network(row.name)
        vn.close()
        shutil.rmtree(run_dir, ignore_errors=True)
