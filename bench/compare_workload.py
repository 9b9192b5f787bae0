"""One side of bench/compare_libvirt.py: the same workload against one tool's CLI.

Standard library only: it runs with Debian's python3 inside libvirt's sandbox as well as
beside a virtnetd. It must run inside the network namespace the tool serves (its guests'
namespaces are made there with ``ip netns add`` and removed before it exits). Prints one
JSON object on its last line.

Every timing is a whole CLI process (what a user or a script waits for), one per network:
define is not timed; start, list, update and destroy are; plug-to-lease is the time from
asking for a guest's link until busybox udhcpc in the guest holds a lease.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import time

XML = """<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}'/>
<ip address='{net}.1' prefix='24'><dhcp><range start='{net}.10' end='{net}.200'/></dhcp></ip>
</network>"""


def subnet(i: int) -> str:
    return f"10.{100 + i // 250}.{i % 250}"


def ms(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return (time.perf_counter() - start) * 1000


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "n": len(ordered),
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        found = re.search(r"VmRSS:\s+(\d+)", status.read())
    return int(found.group(1)) if found else 0


def service_pids(daemon: int) -> list[int]:
    """The daemon and every dnsmasq in this namespace (libvirt's and virtnet's alike)."""
    own = os.stat("/proc/self/ns/net").st_ino
    pids = [daemon]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                name = comm.read().strip()
            if name == "dnsmasq" and os.stat(f"/proc/{entry}/ns/net").st_ino == own:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def firewall_rules() -> int:
    """Rules in this namespace's nftables (libvirt 9's iptables is iptables-nft here)."""
    done = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
    objects = json.loads(done.stdout or '{"nftables": []}')["nftables"]
    return sum(1 for o in objects if "rule" in o)


def plug_to_lease(args: argparse.Namespace, cli: list[str], net: str, bridge: str, k: int) -> float:
    guest = f"cmpg{os.getpid()}x{k}"
    subprocess.run(["ip", "netns", "add", guest], check=True)
    try:
        start = time.perf_counter()
        if args.tool == "virtnet":
            subprocess.run([*cli, "net-port-create", net, "--guest-netns", guest], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
        else:  # what libvirt's LXC driver or a CNI bridge plugin does: a veth on the bridge
            host_end = f"cmph{k}"
            subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name",
                            "eth0", "netns", guest], check=True)  # fmt: skip
            subprocess.run(["ip", "link", "set", host_end, "master", bridge, "up"], check=True)
            subprocess.run(["ip", "-n", guest, "link", "set", "eth0", "up"], check=True)
        done = subprocess.run(
            ["ip", "netns", "exec", guest, "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
             "-t", "30", "-T", "1", "-s", "/bin/true"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        took = (time.perf_counter() - start) * 1000
        if "obtained" not in done.stdout + done.stderr:
            raise RuntimeError(f"no lease on {net}: {done.stderr[-300:]}")
        return took
    finally:
        subprocess.run(["ip", "netns", "del", guest], check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", choices=("virtnet", "libvirt"), required=True)
    parser.add_argument("--cli", required=True, help="the CLI's command line, shell words")
    parser.add_argument("--daemon-pid", type=int, required=True)
    parser.add_argument("--networks", type=int, required=True)
    parser.add_argument("--samples", type=int, default=20, help="update, plug, list samples")
    parser.add_argument("--plugs", type=int, default=3)
    args = parser.parse_args()
    cli = shlex.split(args.cli)
    n = args.networks
    names = [f"cmp{i}" for i in range(n)]
    bridges = [f"vbcmp{i}" for i in range(n)]
    xml_file = f"/tmp/cmp-net-{os.getpid()}.xml"
    for i, name in enumerate(names):
        with open(xml_file, "w") as f:
            f.write(XML.format(name=name, bridge=bridges[i], net=subnet(i)))
        subprocess.run([*cli, "net-define", xml_file], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    os.unlink(xml_file)
    result: dict[str, object] = {"tool": args.tool, "networks": n}
    result["start"] = summary([ms([*cli, "net-start", name]) for name in names])
    time.sleep(1.0)  # let every dnsmasq settle before memory is read
    pids = service_pids(args.daemon_pid)
    result["rss_kib_total"] = sum(rss_kib(p) for p in pids)
    result["processes"] = len(pids)
    result["firewall_rules"] = firewall_rules()
    lists = [ms([*cli, "net-list", "--all"]) for _ in range(min(args.samples, 10))]
    result["list"] = summary(lists)
    picked = [names[(j * 7919) % n] for j in range(min(args.samples, n))]
    updates = []
    for j, name in enumerate(picked):
        i = names.index(name)
        mac = f"52:54:00:cc:{j // 256:02x}:{j % 256:02x}"
        host = f"<host mac='{mac}' ip='{subnet(i)}.{201 + j % 50}'/>"
        updates.append(ms([*cli, "net-update", name, "add", "ip-dhcp-host", host, "--live",
                           "--config"]))  # fmt: skip
    result["update"] = summary(updates)
    plugs = [plug_to_lease(args, cli, names[(k * 31) % n], bridges[(k * 31) % n], k)
             for k in range(min(args.plugs, n))]  # fmt: skip
    result["plug_to_lease"] = summary(plugs)
    result["destroy"] = summary([ms([*cli, "net-destroy", name]) for name in names])
    for name in names:
        subprocess.run([*cli, "net-undefine", name], check=True, stdout=subprocess.DEVNULL)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
