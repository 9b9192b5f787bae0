"""virtnetd benchmark (issue 7): whole-process CLI commands against a running daemon, beside
the in-process CLI and libvirt's ``virsh`` measured in the same run.

Runs in throw-away namespaces; libvirt runs in its own sandbox (bench/libvirt-sandbox.sh,
a copy of ../shared/tools/libvirt-sandbox.sh: it installs libvirt's packages if missing).
Usage, as root:  .venv/bin/python bench/bench_daemon.py [--runs 30] [--no-libvirt]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from virtnet.testing import Lab
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import run_dir_for_test

NAT = """<network><name>bench</name><forward mode='nat'/><bridge name='vbbench' stp='off'/>
<ip address='10.90.0.1' prefix='24'><dhcp><range start='10.90.0.10' end='10.90.0.200'/></dhcp>
</ip></network>"""

VIRSH = r"""
cat > /tmp/bench.xml <<'XML'
{xml}
XML
virsh net-define /tmp/bench.xml >/dev/null
python3 - <<'PY'
import statistics, subprocess, time
V = ["virsh", "-q", "-c", "network:///system"]
def t(*args):
    s = time.perf_counter()
    subprocess.run(V + list(args), check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - s) * 1000
starts, destroys, lists = [], [], []
for _ in range({runs}):
    starts.append(t("net-start", "bench"))
    lists.append(t("net-list", "--all"))
    destroys.append(t("net-destroy", "bench"))
for name, values in (("start", starts), ("destroy", destroys), ("list", lists)):
    high = sorted(values)[max(0, int(len(values) * 0.9) - 1)]
    print("VIRSH", name, statistics.median(values), high)
PY
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - start) * 1000


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def line(what: str, values: list[float], target: float | None = None) -> tuple[float, float]:
    med = statistics.median(values)
    goal = (
        ""
        if target is None
        else f"  (target <= {target:g} ms) " + ("OK" if med <= target else "OVER TARGET")
    )
    print(f"{what:<52} median {med:7.1f} ms  p90 {p90(values):7.1f}  n={len(values)}{goal}")
    return med, p90(values)


def virsh_figures(runs: int) -> dict[str, tuple[float, float]]:
    sandbox = Path(__file__).with_name("libvirt-sandbox.sh")
    xml = NAT.replace("vbbench", "virbr77")
    done = subprocess.run(
        ["bash", str(sandbox), VIRSH.format(xml=xml, runs=runs)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    figures = {}
    for out in done.stdout.splitlines():
        if out.startswith("VIRSH "):
            _, name, median, high = out.split()
            figures[name] = (float(median), float(high))
    if not figures:
        print("libvirt sandbox failed:", done.stderr[-2000:], file=sys.stderr)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-libvirt", action="store_true")
    args = parser.parse_args()
    lab = Lab()
    run = run_dir_for_test()
    try:
        host = lab.netns("host")
        daemon = Daemon(host.name, run / "state", run / "run", lab)
        daemon.start("--interval", "1")
        thin = {**os.environ, "VIRTNET_DAEMON": "require"}
        local = {**os.environ, "VIRTNET_DAEMON": "never"}
        assert daemon.cli("net-define", "-", input=NAT).returncode == 0
        print(f"virtnet whole-process commands, {args.runs} runs each (NAT network with DHCP)")
        ours: dict[str, tuple[float, float]] = {}
        # the compiled client (`virtnet`), then the Python one (`virtnet-py`, bin/virtnet)
        for client, label in (("virtnet", "compiled client"), ("virtnet-py", "Python client")):
            if not (BIN / client).exists():
                continue
            v = [str(BIN / client), *daemon.host_args]
            starts, destroys, lists = [], [], []
            for _ in range(args.runs):
                starts.append(timed([*v, "net-start", "bench"], thin))
                lists.append(timed([*v, "net-list", "--all"], thin))
                destroys.append(timed([*v, "net-destroy", "bench"], thin))
            figures = {
                "start": line(f"virtnet net-start ({label}, daemon)", starts, 60),
                "list": line(f"virtnet net-list --all ({label}, daemon)", lists, 40),
                "destroy": line(f"virtnet net-destroy ({label}, daemon)", destroys),
            }
            ours = ours or figures
        v = [str(BIN / "virtnet"), *daemon.host_args]
        local_starts, local_lists = [], []
        for _ in range(max(5, args.runs // 3)):
            local_starts.append(timed([*v, "net-start", "bench"], local))
            local_lists.append(timed([*v, "net-list", "--all"], local))
            timed([*v, "net-destroy", "bench"], local)
        line("virtnet net-start (in-process, no daemon)", local_starts)
        line("virtnet net-list --all (in-process, no daemon)", local_lists)
        daemon.stop()
        if not args.no_libvirt:
            virsh = virsh_figures(args.runs)
            if virsh:
                print(f"libvirt 9 virsh in its sandbox, {args.runs} runs each")
                for name in ("start", "destroy", "list"):
                    median, high = virsh[name]
                    print(f"{'virsh net-' + name:<52} median {median:7.1f} ms  p90 {high:7.1f}")
                for name, target in (("start", 5), ("destroy", 10)):
                    for at, what in ((0, "median"), (1, "p90")):
                        ratio = virsh[name][at] / ours[name][at]
                        verdict = "OK" if ratio >= target else "UNDER TARGET"
                        label = f"net-{name} {what}: virsh / virtnet (compiled client)"
                        print(f"{label:<52} {ratio:7.2f}x  (target >= {target}x) {verdict}")
    finally:
        lab.cleanup()
        shutil.rmtree(run, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
