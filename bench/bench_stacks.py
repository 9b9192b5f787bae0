"""What plugging a guest costs a stack (issue 17): the CNI plugin's ADD and DEL as a runtime
runs them (a process each), and a tap through the plug socket as QEMU's bridge helper gets
it, each through a virtnetd in a throw-away namespace. Medians and p90s in milliseconds.

Usage, as root:  .venv/bin/python bench/bench_stacks.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from virtnet.testing import Lab
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import run_dir_for_test

NET = """<network><name>b</name><forward mode='nat'/><bridge name='vtbr-bst'/>
<ip address='10.89.0.1' prefix='24'><dhcp><range start='10.89.0.10' end='10.89.0.250'/>
</dhcp></ip></network>"""


def line(what: str, values: list[float]) -> None:
    values = sorted(values)
    p90 = values[int(len(values) * 0.9) - 1]
    print(f"{what:<52} median {statistics.median(values):7.1f} ms  p90 {p90:7.1f}  "
          f"n={len(values)}", flush=True)  # fmt: skip


def cni(command: str, conf: dict[str, object], container: str, netns: str) -> None:
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": str(BIN)}  # fmt: skip
    subprocess.run([str(BIN / "virtnet-cni")], input=json.dumps(conf), env=env, check=True,
                   capture_output=True, text=True)  # fmt: skip


def plug_tap(path: Path, mac: str) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "plug_tap",
               "params": {"network": "b", "mac": mac}}  # fmt: skip
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        _data, fds, _flags, _addr = socket.recv_fds(s, 65536, 1)
    for fd in fds:
        os.close(fd)  # the "VM" is gone at once: the daemon releases the port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    lab, run = Lab(), run_dir_for_test()
    shared = Path(tempfile.mkdtemp(prefix="virtnet-bplug-", dir="/run"))
    try:
        host = lab.netns("host")
        acl = shared / "bridge.conf"
        acl.write_text("allow all\n")
        daemon = Daemon(host.name, run / "state", run / "run", lab)
        daemon.start("--plug-acl", str(acl), "--plug-socket", str(shared / "plug.sock"))
        with daemon.client() as client:
            client.create_network(NET)
        conf = {"cniVersion": "1.1.0", "name": "b", "type": "virtnet-cni",
                "socket": str(daemon.socket)}  # fmt: skip
        adds, dels = [], []
        for i in range(args.runs):
            ns = lab.netns(f"c{i}")
            start = time.perf_counter()
            cni("ADD", conf, ns.name, f"/run/netns/{ns.name}")
            adds.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            cni("DEL", conf, ns.name, f"/run/netns/{ns.name}")
            dels.append((time.perf_counter() - start) * 1000)
        line("CNI ADD (veth, address, route; a process)", adds)
        line("CNI DEL (a process)", dels)
        taps = []
        for i in range(args.runs):
            start = time.perf_counter()
            plug_tap(shared / "plug.sock", f"52:54:00:89:00:{i:02x}")
            taps.append((time.perf_counter() - start) * 1000)
        line("plug socket: guarded tap and its fd (no helper process)", taps)
        daemon.stop()
    finally:
        lab.cleanup()
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    main()
