"""Plug to traffic through virtnetd (issue 15): how soon a guest plugged into a network can talk.

The network is defined from XML that says nothing about STP (virtnet's default: off; libvirt
fills in ``stp='on'``). Each sample plugs a new guest namespace through virtnetd (a veth, as
a container runtime asks with ``net-port-create --guest-netns``), timed from the moment the
request is sent:

* **first forwarded frame** (target <= 50 ms): the guest sends a DHCP discover every
  millisecond from the moment the plug returns (the anti-spoofing guard lets a client's
  broadcast through); another guest of the network, plugged beforehand, times the first one
  the bridge forwards to it;
* **DHCP lease** (target <= 300 ms): ``busybox udhcpc`` started as the plug returns, until it
  holds its lease.

``--stp on`` writes ``stp='on'`` into the XML (libvirt's default) to show what it costs: the
kernel's minimum forward delay, 2 x 2 s, before the first frame. Usage, as root:

    .venv/bin/python bench/bench_plug_traffic.py [--samples 10] [--stp on]
"""

from __future__ import annotations

import argparse
import select
import socket
import statistics
import subprocess
import time

from bench_linuxbridge import PROGRESS, bench_lab

from virtnet.client import Client
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.model.port_xml import format_port
from virtnet.testing import Namespace
from virtnet.testing.daemon import Daemon
from virtnet.testing.frames import ETH_IP, dhcp_request, ethernet, ipv4_udp, mac_bytes

NET = "plugbench"
ETH_P_ALL = 0x0003
GIVE_UP = 10.0  # seconds: STP on takes ~4


def network_xml(stp: str | None) -> str:
    said = f" stp='{stp}'" if stp else ""
    return (
        f"<network><name>{NET}</name><forward mode='nat'/><bridge name='vbplug'{said}/>"
        "<ip address='10.93.0.1' prefix='24'><dhcp><range start='10.93.0.10' "
        "end='10.93.0.250'/></dhcp></ip></network>"
    )


def raw_socket(ifname: str = "eth0") -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def plug(client: Client, guest: Namespace) -> str:
    port = NetworkPort(network=NET, attachment=Attachment(kind=AttachmentKind.VETH,
                                                          netns=guest.name))  # fmt: skip
    return str(client.create_port(NET, format_port(port))["mac"])


def first_frame(client: Client, guest: Namespace, watch: socket.socket) -> float:
    """Milliseconds from the plug request until ``watch`` sees the guest's first frame."""
    start = time.perf_counter()
    mac = plug(client, guest)
    sender = guest.call(raw_socket)
    discover = ethernet("ff:ff:ff:ff:ff:ff", mac, ETH_IP,
                        ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67,
                                 dhcp_request(mac, 1)))  # fmt: skip
    source = mac_bytes(mac)
    try:
        while time.perf_counter() - start < GIVE_UP:
            sender.send(discover)
            readable, _, _ = select.select([watch], [], [], 0.001)
            while readable:
                try:
                    frame = watch.recv(2048)
                except BlockingIOError:
                    break
                if frame[6:12] == source:
                    return (time.perf_counter() - start) * 1000
        return float("inf")
    finally:
        sender.close()


def lease(client: Client, guest: Namespace) -> float:
    """Milliseconds from the plug request until udhcpc holds a lease."""
    start = time.perf_counter()
    plug(client, guest)
    done = subprocess.run(
        ["ip", "netns", "exec", guest.name, "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
         "-t", "10", "-T", "1", "-s", "/bin/true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = (time.perf_counter() - start) * 1000
    return took if "obtained" in done.stdout + done.stderr else float("inf")


def report(what: str, values: list[float], target: float) -> None:
    med = statistics.median(values)
    high = sorted(values)[max(0, int(len(values) * 0.9) - 1)]
    verdict = "OK" if med <= target else "OVER TARGET"
    PROGRESS.say(f"{what:<52} median {med:8.1f} ms  p90 {high:8.1f}  n={len(values):<3} "
                 f"(target <= {target:g} ms) {verdict}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--stp", choices=("on", "off"), help="say stp= in the XML")
    args = parser.parse_args()
    with bench_lab() as (lab, run):
        host = lab.netns("host")
        daemon = Daemon(host.name, run / "state", run / "run", lab).start()
        with Client.connect(daemon.socket) as client:
            client.call("create_network", xml=network_xml(args.stp))
            said = f"stp='{args.stp}'" if args.stp else "nothing about STP"
            PROGRESS.say(f"a NAT network whose XML says {said}; plugs through virtnetd")
            watcher = lab.netns("watch")
            plug(client, watcher)
            watch = watcher.call(raw_socket)
            time.sleep(0.5 if args.stp != "on" else 5)  # the watcher's own port forwards
            frames, leases = [], []
            for k in range(args.samples):
                PROGRESS.step(f"sample {k + 1} of {args.samples}")
                frames.append(first_frame(client, lab.netns(f"f{k}"), watch))
                leases.append(lease(client, lab.netns(f"l{k}")))
            watch.close()
            report("plug -> first forwarded frame (veth, daemon)", frames, 50)
            report("plug -> DHCP lease (veth, udhcpc, daemon)", leases, 300)
        daemon.stop()


if __name__ == "__main__":
    main()
