"""virtnet beside libvirt on the same workload (issue 15): N NAT networks with DHCP, defined
from the same XML (which says nothing about STP), driven by whole CLI processes.

For each N: virtnet through virtnetd (thin client) in a throw-away namespace, then libvirt 9's
network driver with ``virsh`` in its sandbox (bench/libvirt-sandbox.sh); both run
bench/compare_workload.py, so the two sides do exactly the same thing. Prints a table of
medians and p90s (start, destroy, update, list, plug-to-lease), memory per network (RSS of the
daemon and every dnsmasq, divided by N) and firewall rules; writes the figures as JSON and
draws them as a PNG chart.

Usage, as root:
  .venv/bin/python bench/compare_libvirt.py [--sizes 1,10,100] [--solo 1000] [--shared 32]
      [--png docs/img/compare-libvirt.png] [--json compare.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from virtnet.progress import Progress
from virtnet.testing import Lab
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import run_dir_for_test

HERE = Path(__file__).parent
WORKLOAD = HERE / "compare_workload.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # libvirt's sandbox has no venv; the workload needs none


def last_json(stdout: str, stderr: str, what: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"{what} gave no figures: {stderr[-1500:]}")


def run_virtnet(networks: int, plugs: int, shared: int = 0) -> dict[str, Any]:
    """``shared``: networks per dnsmasq (virtnetd's ``dnsmasq_shared``); the row's tool is
    then ``virtnet+shared``."""
    lab = Lab()
    run = run_dir_for_test()
    try:
        host = lab.netns("host")
        daemon = Daemon(host.name, run / "state", run / "run", lab)
        daemon.env["VIRTNET_DNSMASQ_SHARED"] = str(shared)
        daemon.start("--interval", "1")
        assert daemon.proc is not None
        cli = shlex.join([str(BIN / "virtnet"), *daemon.host_args])
        done = subprocess.run(
            # nsenter, not ip netns exec: guests' namespaces made in a private mount namespace
            # would be invisible to the daemon
            ["nsenter", f"--net=/run/netns/{host.name}", SYSTEM_PYTHON, str(WORKLOAD),
             "--tool", "virtnet", "--cli", cli, "--daemon-pid", str(daemon.proc.pid),
             "--networks", str(networks),
             "--plugs", str(plugs)],
            capture_output=True, text=True, timeout=7200,
            env={**os.environ, "VIRTNET_DAEMON": "require"},
        )  # fmt: skip
        daemon.stop()
        row = last_json(done.stdout, done.stderr, f"virtnet at N={networks}")
        if shared:
            row["tool"] = "virtnet+shared"
        return row
    finally:
        lab.cleanup()
        shutil.rmtree(run, ignore_errors=True)


def run_libvirt(networks: int, plugs: int) -> dict[str, Any]:
    sandbox = HERE / "libvirt-sandbox.sh"
    script = (
        f"{SYSTEM_PYTHON} {shlex.quote(str(WORKLOAD))} --tool libvirt "
        "--cli 'virsh -q -c network:///system' --daemon-pid $(cat /run/libvirt/sandbox.pid) "
        f"--networks {networks} --plugs {plugs}"
    )
    done = subprocess.run(
        ["bash", str(sandbox), script], capture_output=True, text=True, timeout=7200
    )
    return last_json(done.stdout, done.stderr, f"libvirt at N={networks}")


COLUMNS = (
    ("start", "net-start"),
    ("destroy", "net-destroy"),
    ("update", "net-update"),
    ("list", "net-list"),
    ("plug_to_lease", "plug→lease"),
)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["N", "tool"] + [f"{label} ms (p90)" for _, label in COLUMNS]
    head += ["RSS/network", "processes", "firewall rules"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = r["networks"]
        cells = [str(n), r["tool"]]
        cells += [f"{r[key]['median']:.0f} ({r[key]['p90']:.0f})" for key, _ in COLUMNS]
        cells += [f"{r['rss_kib_total'] / n / 1024:.2f} MB", str(r["processes"]),
                  str(r["firewall_rules"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    by = {(r["tool"], r["networks"]): r for r in rows}
    for (tool, n), theirs in sorted(by.items()):
        ours = by.get(("virtnet", n))
        if tool != "libvirt" or ours is None:
            continue
        for key, label, goal in (("start", "net-start", 5), ("destroy", "net-destroy", 10)):
            for stat in ("median", "p90"):
                ratio = theirs[key][stat] / ours[key][stat]
                verdict = "OK" if ratio >= goal else "UNDER TARGET"
                out.append(f"N={n:<5} {label} {stat}: virsh / virtnet = {ratio:5.1f}x "
                           f"(target >= {goal}x) {verdict}")  # fmt: skip
    return out


TOOLS = (("virtnet", "tab:blue"), ("virtnet+shared", "tab:green"), ("libvirt", "tab:red"))


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, f"{label} (ms, median)") for key, label in COLUMNS]
    panels += [("rss", "memory per network (MB RSS)"), ("firewall_rules", "firewall rules")]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, (key, title) in zip(axes.flat, panels, strict=False):
        for tool, colour in TOOLS:
            mine = sorted((r for r in rows if r["tool"] == tool), key=lambda r: r["networks"])
            if not mine:
                continue
            xs = [r["networks"] for r in mine]
            if key == "rss":
                ys = [r["rss_kib_total"] / r["networks"] / 1024 for r in mine]
            elif key == "firewall_rules":
                ys = [r["firewall_rules"] for r in mine]
            else:
                ys = [r[key]["median"] for r in mine]
            ax.plot(xs, ys, marker="o", color=colour, label=tool)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("networks")
        ax.grid(True, alpha=0.3)
        if key in ("firewall_rules", "plug_to_lease", "start", "destroy", "rss", "list"):
            ax.set_yscale("log")
    axes.flat[0].legend()
    axes.flat[-1].axis("off")
    fig.suptitle(f"virtnet (virtnetd + thin CLI) vs libvirt 9 (virsh), {time.strftime('%Y-%m-%d')}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,10,100", help="N for both tools")
    parser.add_argument("--solo", default="1000", help="N for virtnet alone ('' for none)")
    parser.add_argument("--plugs", type=int, default=3, help="plug-to-lease samples per N")
    parser.add_argument("--png", type=Path, default=Path("compare-libvirt.png"))
    parser.add_argument("--json", type=Path, default=Path("compare-libvirt.json"))
    parser.add_argument("--no-libvirt", action="store_true")
    parser.add_argument(
        "--shared", type=int, default=0, help="also virtnet, N networks per dnsmasq, at --solo"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    solo = [int(s) for s in args.solo.split(",") if s]
    rows: list[dict[str, Any]] = []
    runs = len(sizes + solo) + (0 if args.no_libvirt else len(sizes))
    runs += len(solo) if args.shared else 0
    with Progress("compare", total=runs) as progress:  # on a terminal only
        for n in sizes + solo:
            progress.step(f"virtnet, {n} networks")
            rows.append(run_virtnet(n, args.plugs))
            if n in sizes and not args.no_libvirt:
                progress.step(f"libvirt, {n} networks")
                rows.append(run_libvirt(n, args.plugs))
            if n in solo and args.shared:
                progress.step(f"virtnet, {n} networks, {args.shared} per dnsmasq")
                rows.append(run_virtnet(n, args.plugs, args.shared))
    print(f"# virtnet vs libvirt, {time.strftime('%Y-%m-%d %H:%M')}, {os.uname().nodename}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")  # fmt: skip
    print(table(rows))
    for line in ratios(rows):
        print(line)
    args.json.write_text(json.dumps(rows, indent=1))
    chart(rows, args.png)
    print(f"figures: {args.json}; chart: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
