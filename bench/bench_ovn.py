"""OVN backend benchmark (issue 16): prints each figure beside its target.

Three simulated chassis (``virtnet.testing.ovn``: each a namespace with its own OVS on the
userspace datapath and ovn-controller; central NB/SB + northd), a virtnetd per chassis
configured as an operator would (``--driver-option ovn.nb=...``), driven through
``virtnet.client.Client``. As root:

    .venv/bin/python bench/bench_ovn.py [--repeat 10] [--ports 300]

- network start and destroy through virtnetd (target <= 50 ms);
- plug on hv2 to the first ping reply a guest on hv1 gets from the new guest (target
  <= 100 ms on a quiet machine; OVN itself: 40-56 ms from a logical port to a ping here);
- ``--ports`` tap ports plugged round-robin over the three chassis: per-port cost of the
  first and the last tenth (target: flat, +-20%);
- where a plug's time goes as one chassis fills (``--ports`` / 2 more on hv1, in-process,
  each step timed): virtnet's own steps against its waits on ovs-vswitchd (the port's
  OpenFlow number) and ovn-controller (the port bound, its flows in), and ovs-vswitchd
  alone (ports added to a bridge of its own with no OVN and no virtnet), so the growth is
  put where it is.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_linuxbridge import PROGRESS, ms, report

from virtnet.client import Client
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.model.port_xml import format_port
from virtnet.testing.daemon import Daemon
from virtnet.testing.netns import Lab, Namespace
from virtnet.testing.ovn import OvnChassis, OvnCluster

NETWORK = """<network><name>{name}</name><forward mode='route'/>
  <ip address='10.80.0.1' prefix='16'><dhcp><range start='10.80.0.10' end='10.80.255.200'/>
  </dhcp></ip></network>"""


def veth_port(network: str, ns: Namespace, address: str | None = None) -> str:
    attachment = Attachment(kind=AttachmentKind.VETH, netns=ns.name)
    if address:
        attachment.addresses = [address]
    return format_port(NetworkPort(network=network, attachment=attachment))


def first_reply(pinger: subprocess.Popen[str], timeout: float) -> float | None:
    """The kernel timestamp of the first echo reply ``ping -D`` printed."""
    assert pinger.stdout is not None
    deadline = time.time() + timeout
    for line in pinger.stdout:
        found = re.match(r"\[(\d+\.\d+)\].*bytes from", line)
        if found:
            return float(found[1])
        if time.time() > deadline:
            break
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--ports", type=int, default=300)
    args = parser.parse_args()
    lab = Lab()
    cluster = OvnCluster(lab)
    daemons: list[Daemon] = []
    try:
        PROGRESS.step("three chassis")
        up = ms(lambda: cluster.start(chassis=3))
        PROGRESS.say(f"{'OVN cluster up (central + 3 chassis)':<48} {up:8.0f} ms")
        assert cluster.central is not None
        for ch in cluster.chassis:
            host = cluster.host(ch)
            daemon = Daemon(ch.ns.name, host.dir / "state", host.dir / "run", lab,
                            env={"VIRTNET_OVSDB": ch.ovsdb, "VIRTNET_OVN_NB": ""})  # fmt: skip
            daemons.append(
                daemon.start(
                    "--driver-option",
                    f"ovn.nb={cluster.central.nb}",
                    "--driver-option",
                    f"ovn.rundir={ch.daemons.dir}",
                )
            )
        clients = [Client.connect(d.socket, timeout=120) for d in daemons]
        hv1, hv2, _ = clients
        hv1.define_network(NETWORK.format(name="bench"), backend="ovn")

        PROGRESS.step("net-start / net-destroy")
        starts, destroys = [], []
        for _ in range(args.repeat):
            starts.append(ms(lambda: hv1.start_network("bench")))
            destroys.append(ms(lambda: hv1.destroy_network("bench")))
        report("OVN net-start via virtnetd (NB transaction)", starts, 50)
        report("OVN net-destroy via virtnetd", destroys, 50)
        hv1.start_network("bench")

        PROGRESS.step("plug on hv2 -> first packet from hv1")
        g1 = lab.netns("g1")
        hv1.create_port("bench", veth_port("bench", g1, "10.80.0.2"))
        g1.ip("addr", "add", "10.80.0.2/16", "dev", "eth0")
        # the pinging guest retries ARP every 10 ms, not every second (the kernel's default):
        # the figure is then OVN's and virtnet's, not the prober's neighbour timer
        g1.exec("sysctl", "-qw", "net.ipv4.neigh.eth0.retrans_time_ms=10",
                "net.ipv4.neigh.eth0.mcast_solicit=1000")  # fmt: skip
        firsts, plugs = [], []
        for index in range(args.repeat):
            guest = lab.netns(f"p{index}")
            address = f"10.80.1.{index + 1}"
            pinger = g1.popen("ping", "-D", "-n", "-i", "0.01", "-W", "1", address,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
            lab.track(pinger)
            start = time.time()
            hv2.create_port("bench", veth_port("bench", guest, address))
            plugs.append((time.time() - start) * 1000)
            guest.ip("addr", "add", f"{address}/16", "dev", "eth0")
            reply = first_reply(pinger, 30)
            pinger.kill()
            pinger.wait()
            if reply is not None:
                firsts.append((reply - start) * 1000)
        report("plug on hv2 via virtnetd (returns when OVN up)", plugs, None)
        report("plug on hv2 -> first reply seen on hv1", firsts, 100)

        PROGRESS.step(f"{args.ports} ports over 3 chassis")
        costs = []
        tap = format_port(NetworkPort(network="bench", attachment=Attachment(AttachmentKind.TAP)))
        for index in range(args.ports):
            client = clients[index % 3]
            costs.append(ms(lambda client=client: client.create_port("bench", tap)))  # type: ignore[misc]
            if index % 30 == 29:
                PROGRESS.step(f"{index + 1}/{args.ports} ports")
        tenth = max(len(costs) // 10, 1)
        first, last = statistics.median(costs[:tenth]), statistics.median(costs[-tenth:])
        report(f"tap plug, ports 1-{tenth}", costs[:tenth], None)
        report(f"tap plug, ports {len(costs) - tenth + 1}-{len(costs)}", costs[-tenth:], None)
        drift = (last - first) / first * 100
        verdict = "OK" if abs(drift) <= 20 else "NOT FLAT"
        PROGRESS.say(f"{'per-port cost, last tenth vs first':<48} {drift:+8.1f} %  "
                     f"(target within +-20%)  {verdict}")  # fmt: skip
        for client in clients:
            client.close()
        breakdown(cluster, max(args.ports // 2, 20))
    finally:
        for daemon in daemons:
            daemon.stop()
        cluster.stop()
        lab.cleanup()
        PROGRESS.close()


#: the steps that wait on OVS or OVN; the others are virtnet's own work
WAITS = ("AwaitOvsInterface", "AwaitPortBound")


def breakdown(cluster: OvnCluster, count: int) -> None:
    """Each plug step timed (in-process API on hv1, ``count`` more tap ports), first tenth
    against last; then ovs-vswitchd alone for as many ports."""
    import os

    from virtnet.api import Virtnet
    from virtnet.plan import Step
    from virtnet.services import steps as core_steps
    from virtnet_ovn import steps as ovn_steps

    times: dict[str, list[float]] = {}

    def timed(cls: type[Step]) -> None:
        apply = cls.apply

        def wrapper(self: Step, ctx: object) -> None:
            start = time.perf_counter()
            apply(self, ctx)  # type: ignore[arg-type]
            times.setdefault(cls.__name__, []).append((time.perf_counter() - start) * 1000)

        cls.apply = wrapper  # type: ignore[method-assign]

    for module in (core_steps, ovn_steps):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Step) and "apply" in vars(value):
                timed(value)
    hv1 = cluster.chassis[0]
    assert cluster.central is not None
    host = cluster.host(hv1)
    os.environ.update(host.env())
    PROGRESS.step(f"where a plug's time goes: {count} ports on hv1")
    totals = []
    with Virtnet(host.dir / "inproc-state", host.dir / "inproc-run", netns=hv1.ns.name) as vn:
        vn.create_network(NETWORK.format(name="inproc").replace("10.80.", "10.81."), backend="ovn")
        for _index in range(count):
            port = NetworkPort(network="inproc", attachment=Attachment(AttachmentKind.TAP))
            totals.append(ms(lambda port=port: vn.create_port("inproc", port)))  # type: ignore[misc]
        vn.destroy_network("inproc")
    tenth = max(count // 10, 1)

    def first_last(values: list[float]) -> tuple[float, float]:
        return statistics.median(values[:tenth]), statistics.median(values[-tenth:])

    own = [t - sum(times[w][i] for w in WAITS) for i, t in enumerate(totals)]
    PROGRESS.say(f"{'per plug (ms), first tenth -> last tenth':<48}")
    for name, values in [("whole plug", totals), ("virtnet's own (plug minus the waits)", own),
                         *((f"  step {n}", v[-count:]) for n, v in times.items()
                           if len(v) >= count)]:  # fmt: skip
        first, last = first_last(values)
        waits = name == "whole plug" or name.strip().removeprefix("step ") in WAITS
        grows = last > first + max(0.2 * first, 0.3)  # +20 %, or noise under 0.3 ms
        flat = "" if waits else ("  GROWS" if grows else "  flat")
        PROGRESS.say(f"{name:<48} {first:8.2f} -> {last:8.2f}{flat}")
    first, last = first_last(vswitchd_alone(hv1, count))
    PROGRESS.say(f"{'ovs-vswitchd alone: add-port -> ofport':<48} {first:8.2f} -> {last:8.2f}"
                 "  (the userspace datapath; no kernel module here)")  # fmt: skip


def vswitchd_alone(ch: OvnChassis, count: int) -> list[float]:
    """Tap ports added to a bridge of their own on the chassis's ovs-vswitchd (no OVN, no
    virtnet), each until it has its OpenFlow port number: the datapath's own growth."""
    from virtnet.services.ovsdb_rpc import OvsdbRpc, insert, mutate, named, oset

    ch.vsctl("add-br", "br-alone", "--", "set", "bridge", "br-alone", "datapath_type=netdev")
    costs = []
    try:
        with OvsdbRpc(ch.ovsdb) as db:
            for index in range(count):
                name = f"alone{index}"
                ch.ns.exec("ip", "tuntap", "add", name, "mode", "tap")
                start = time.perf_counter()
                db.transact("Open_vSwitch", [
                    insert("Interface", {"name": name}, "i"),
                    insert("Port", {"name": name, "interfaces": named("i")}, "p"),
                    mutate("Bridge", [["name", "==", "br-alone"]],
                           ["ports", "insert", oset([named("p")])]),
                ])  # fmt: skip
                db.wait("Open_vSwitch", "Interface", [["name", "==", name]], ["ofport"],
                        lambda rows: bool(rows) and rows[0]["ofport"] not in (["set", []], -1),
                        10.0)  # fmt: skip
                costs.append((time.perf_counter() - start) * 1000)
    finally:
        ch.vsctl("--if-exists", "del-br", "br-alone")
    return costs


if __name__ == "__main__":
    main()
