"""Open vSwitch backend benchmark (issue 4): prints each figure beside its target.

A private OVS (userspace datapath) in a throw-away namespace. As root:

    .venv/bin/python bench/bench_ovs.py [--ports 5000] [--repeat 20]

Port plug through the API, in batches, as the bridge fills (target <= 5 ms at 1,000 ports),
and the NAT network start/destroy figures of the Linux bridge benchmark, on OVS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_linuxbridge import PROGRESS, ms, nat_xml, report

from virtnet.api import Virtnet
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing import Lab
from virtnet.testing.fixtures import run_dir_for_test
from virtnet.testing.ovs import OvsServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    lab, run = Lab(), run_dir_for_test()
    ovs = None
    try:
        host = lab.netns("bench")
        ovs = OvsServer(host).start()
        os.environ["VIRTNET_OVSDB"] = ovs.remote
        with Virtnet(run / "state", run / "run", netns=host.name) as vn:
            vn.define_network(nat_xml(0), backend="ovs")
            starts, destroys = [], []
            PROGRESS.step("net-start / net-destroy")
            for _ in range(args.repeat):
                starts.append(ms(lambda: vn.start_network("n0")))
                destroys.append(ms(lambda: vn.destroy_network("n0")))
            report("OVS API net-start, NAT + DHCP", starts, 25)
            report("OVS API net-destroy, NAT + DHCP", destroys, 25)
            vn.start_network("n0")
            step = max(args.ports // 10, 1)
            PROGRESS.say(
                f"\nscaling: tap ports on one OVS bridge, batches of {step} (no anti-spoofing)"
            )
            batch: list[float] = []
            for i in range(1, args.ports + 1):
                if i % 10 == 1:
                    PROGRESS.step(f"port {i} of {args.ports}")
                port = NetworkPort(
                    network="n0", attachment=Attachment(AttachmentKind.TAP, spoof_check=False)
                )
                batch.append(ms(lambda p=port: vn.create_port("n0", p)))
                if i % step == 0:
                    target = 5 if i <= 1000 else None
                    report(f"  ports {i - step + 1:>5}-{i:<5} plug", batch, target)
                    batch = []
            PROGRESS.step(f"destroying the network with {args.ports} ports")
            destroy = ms(lambda: vn.destroy_network("n0"))
            PROGRESS.say(f"  destroy of the network with {args.ports} ports: {destroy:.0f} ms")
    finally:
        PROGRESS.close()
        if ovs is not None:
            ovs.stop()
        lab.cleanup()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
