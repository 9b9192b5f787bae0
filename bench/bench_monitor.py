"""virtnetd's watch on running networks (issue 15): idle CPU and time to notice drift.

Starts a daemon in a throw-away namespace, starts N NAT networks with DHCP through it, then
measures the daemon's own CPU time while nothing happens (utime + stime from /proc, over
``--idle`` seconds), and how long after a bridge is deleted by hand the daemon has it back
(drift noticed and repaired), and the memory of virtnetd and the dnsmasqs per network (RSS,
as issue 15 counts it, and PSS, which counts shared pages once). Usage, as root:

    .venv/bin/python bench/bench_monitor.py [--networks 1000] [--idle 20] [--drifts 5] [--shared N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from bench_linuxbridge import PROGRESS, bench_lab, nat_xml

from virtnet.client import Client
from virtnet.testing.daemon import Daemon

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def kib(pid: int, name: str, field: str) -> int:
    """One ``kB`` figure of /proc/PID/FILE (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--networks", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement")
    parser.add_argument("--drifts", type=int, default=5)
    parser.add_argument(
        "--shared", type=int, default=0, help="networks per dnsmasq (virtnetd.conf dnsmasq_shared)"
    )
    args = parser.parse_args()
    with bench_lab() as (lab, run):
        host = lab.netns("host")
        options = []
        if args.shared:
            config = run / "virtnetd.conf"
            config.write_text(f"[virtnetd]\ndnsmasq_shared = {args.shared}\n")
            options = ["--config", str(config)]
        daemon = Daemon(host.name, run / "state", run / "run", lab).start(*options)
        assert daemon.proc is not None
        began = time.monotonic()
        with Client.connect(daemon.socket) as client:
            for i in range(args.networks):
                if i % 10 == 0:
                    PROGRESS.step(f"starting network {i + 1} of {args.networks}")
                client.call("create_network", xml=nat_xml(i))
        PROGRESS.say(f"{args.networks} NAT networks with DHCP started through virtnetd in "
                     f"{time.monotonic() - began:.1f} s")  # fmt: skip
        time.sleep(2)  # let the start-up settle (leases files, first passes)
        rss = pss = 0
        for pid in [daemon.proc.pid, *host.pids()]:
            rss += kib(pid, "status", "VmRSS:")
            pss += kib(pid, "smaps_rollup", "Pss:")
        per = rss / 1024 / args.networks
        verdict = "OK" if per <= 1 else "OVER TARGET"
        PROGRESS.say(
            f"{'memory per network, RSS of virtnetd + dnsmasq':<52} {per:6.2f} MB  "
            f"(PSS {pss / 1024 / args.networks:.2f} MB)  (target <= 1 MB) {verdict}"
        )
        PROGRESS.step(f"virtnetd idle for {args.idle:g} s")
        before, t0 = cpu_seconds(daemon.proc.pid), time.monotonic()
        time.sleep(args.idle)
        used = cpu_seconds(daemon.proc.pid) - before
        share = 100 * used / (time.monotonic() - t0)
        verdict = "OK" if share < 1 else "OVER TARGET"
        PROGRESS.say(f"{'virtnetd idle CPU at ' + str(args.networks) + ' networks':<52} "
                     f"{share:6.2f} %  (target < 1 %) {verdict}")  # fmt: skip
        delays = []
        for k in range(args.drifts):
            PROGRESS.step(f"drift {k + 1} of {args.drifts}")
            bridge = f"vbn{(k * 7919) % args.networks}"
            index = host.ip("-o", "link", "show", "dev", bridge).stdout.split(":")[0]
            host.ip("link", "del", bridge)
            t0 = time.monotonic()
            while True:
                shown = host.ip("-o", "link", "show", "dev", bridge, check=False).stdout
                if shown and shown.split(":")[0] != index:
                    break
                if time.monotonic() - t0 > 30:
                    raise SystemExit(f"{bridge} was not repaired within 30 s")
                time.sleep(0.005)
            delays.append((time.monotonic() - t0) * 1000)
            time.sleep(0.5)
        med = statistics.median(delays)
        verdict = "OK" if med <= 1000 else "OVER TARGET"
        PROGRESS.say(f"{'bridge deleted -> re-made by virtnetd':<52} median {med:7.0f} ms  "
                     f"max {max(delays):6.0f} ms  (target <= 1000 ms) {verdict}")  # fmt: skip
        PROGRESS.step(f"destroying {args.networks} networks")
        began = time.monotonic()
        with Client.connect(daemon.socket) as client:
            for i in range(args.networks):
                client.call("destroy_network", name=f"n{i}")
        destroyed = time.monotonic()
        daemon.stop(timeout=60)
        stopped = time.monotonic() - destroyed
        PROGRESS.say(f"{args.networks} networks destroyed through virtnetd in "
                     f"{destroyed - began:.1f} s; the daemon stopped {stopped:.1f} s later "
                     "(it deletes the retired links first, up to 30 s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
