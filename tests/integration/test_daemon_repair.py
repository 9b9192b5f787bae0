"""Drift reported by net-check and repaired by virtnetd; a daemon killed with SIGKILL at any
moment loses nothing."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import pytest

from virtnet.testing import Lab, Namespace, can_ping, dhcp_lease
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import needs_root
from virtnet.testing.ovs import OvsServer

pytestmark = [needs_root, pytest.mark.root]

NET = """<network><name>drift</name><forward mode='nat'/><bridge name='vtdrift' stp='off'/>
<ip address='10.82.1.1' prefix='24'><dhcp><range start='10.82.1.10' end='10.82.1.90'/></dhcp>
</ip></network>"""


def _dnsmasq_pid(run_dir: Path) -> int:
    [pidfile] = run_dir.glob("dnsmasq/*/dnsmasq.pid")
    return int(pidfile.read_text())


def _sabotage(kind: str, host_ns: Namespace, run_dir: Path) -> str:
    """Break the network by hand; returns the drift line net-check must print."""
    if kind == "bridge":
        host_ns.ip("link", "del", "vtdrift")
        return "bridge vtdrift is missing"
    if kind == "nftables":
        host_ns.exec("nft", "flush", "table", "inet", "virtnet")
        return "nftables chain inet virtnet forward is missing or empty"
    subprocess.run(["kill", str(_dnsmasq_pid(run_dir))], check=True)
    return "is not running"


@pytest.mark.parametrize("kind", ["bridge", "nftables", "dnsmasq"])
def test_drift_is_reported_then_repaired_within_5_s(
    kind: str, virtnetd: Daemon, lab: Lab, host_ns: Namespace
) -> None:
    guest = lab.netns("guest")
    assert virtnetd.cli("net-define", "-", input=NET).returncode == 0
    assert virtnetd.cli("net-start", "drift").returncode == 0
    made = virtnetd.cli("net-port-create", "drift", "--netns", guest.name, "--json")
    assert made.returncode == 0, made.stderr
    address = dhcp_lease(guest, "eth0")
    assert address and can_ping(guest, "10.82.1.1")

    virtnetd.stop()  # a daemon that only reports, to see the drift before it is repaired
    virtnetd.start("--no-repair", "--interval", "0.2")
    expected = _sabotage(kind, host_ns, virtnetd.run_dir)
    time.sleep(0.5)
    check = virtnetd.cli("net-check", "drift")
    assert check.returncode == 1 and expected in check.stdout, check.stdout

    virtnetd.stop()
    began = time.monotonic()
    virtnetd.start("--interval", "1")
    while virtnetd.cli("net-check", "drift").returncode != 0:
        assert time.monotonic() - began < 5, virtnetd.log_text()
        time.sleep(0.1)
    assert "drifted" in virtnetd.log_text() and "repaired" in virtnetd.log_text()
    # the guest's link rejoined the re-made bridge; DHCP and forwarding work again
    assert can_ping(guest, "10.82.1.1", count=3)
    assert dhcp_lease(guest, "eth0") == address
    forward = host_ns.exec("nft", "list", "chain", "inet", "virtnet", "forward").stdout
    assert forward.count("oifname @links jump to_net") == 1  # the base rules once, not twice


@pytest.mark.parametrize("kind", ["bridge", "nftables", "dnsmasq"])
def test_drift_is_noticed_from_kernel_events_not_a_timer(
    kind: str, virtnetd: Daemon, lab: Lab, host_ns: Namespace
) -> None:
    """With checks on a timer 60 s apart, the repair still comes at once: the daemon hears
    the link go (rtnetlink), the rules go (nftables notifications) or dnsmasq exit (pidfd)."""
    guest = lab.netns("guest")
    virtnetd.stop()
    virtnetd.start("--interval", "60", "--full-interval", "600")
    assert virtnetd.cli("net-create", "-", input=NET).returncode == 0
    assert virtnetd.cli("net-port-create", "drift", "--netns", guest.name).returncode == 0
    assert dhcp_lease(guest, "eth0")
    time.sleep(0.3)  # the start's own events are checked and found in sync
    before = virtnetd.log_text()
    _sabotage(kind, host_ns, virtnetd.run_dir)
    began = time.monotonic()
    while "repaired" not in virtnetd.log_text()[len(before) :]:
        assert time.monotonic() - began < 5, virtnetd.log_text()
        time.sleep(0.05)
    assert virtnetd.cli("net-check", "drift").returncode == 0
    assert can_ping(guest, "10.82.1.1", count=2)


def _agreement(daemon: Daemon, host_ns: Namespace) -> None:
    """State, kernel objects and dnsmasq processes agree: no leak, no duplicate."""
    listed = daemon.cli("net-list", "--json")
    assert listed.returncode == 0, listed.stderr
    active = {row["name"]: row for row in json.loads(listed.stdout)}
    links = host_ns.links() - {"lo"}
    bridges = {f"vtk{i}" for i in range(4)}
    assert links & bridges == {row["bridge"] for row in active.values()}
    ports = set()
    for name in active:
        check = daemon.cli("net-check", name)
        assert check.returncode == 0, check.stdout + check.stderr
        rows = json.loads(daemon.cli("net-port-list", name, "--json").stdout)
        ports |= {row["attachment"]["ifname"] for row in rows}
    assert links - bridges == ports  # every port link is a recorded port's, and back
    dnsmasq = [
        pid for pid in host_ns.pids() if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq"
    ]
    assert len(dnsmasq) == 2 * len(active)  # dnsmasq and its lease-script helper
    assert not [p for p in (daemon.run_dir / "journal").glob("*.jsonl") if _orphan(p, active)]


def _orphan(journal: Path, active: dict[str, object]) -> bool:
    kind, _, ident = journal.stem.partition("-")
    return kind == "network" and ident not in active


@pytest.mark.slow
def test_kill_9_at_any_moment_loses_nothing(virtnetd: Daemon, host_ns: Namespace) -> None:
    for i in range(4):
        xml = NET.replace("drift", f"k{i}").replace("vtdrift", f"vtk{i}")
        assert (
            virtnetd.cli("net-define", "-", input=xml.replace("10.82.1", f"10.83.{i}")).returncode
            == 0
        )
    rng = random.Random(7)
    for _round in range(6):
        busy = [
            subprocess.Popen(
                ["bash", "-c", script(virtnetd, i)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(4)
        ]
        time.sleep(rng.uniform(0.05, 0.6))
        virtnetd.kill()
        for proc in busy:
            proc.wait(timeout=60)
        virtnetd.start()
        _agreement(virtnetd, host_ns)


def script(daemon: Daemon, i: int) -> str:
    """One client's loop: start, plug two taps, unplug one, destroy; again and again. Its
    commands fail once the daemon is killed (VIRTNET_DAEMON=require): it just goes on."""
    v = " ".join([str(BIN / "virtnet"), *daemon.host_args])
    return f"""export VIRTNET_DAEMON=require
for n in 1 2 3 4 5 6 7 8; do
  {v} net-start k{i}
  {v} net-port-create k{i} --tap vtk{i}a$n
  u=$({v} net-port-create k{i} --tap vtk{i}b$n) && {v} net-port-delete "$u"
  {v} net-destroy k{i}
done
"""


def test_a_restarted_daemon_reconciles_open_vswitch_ports(
    virtnetd: Daemon, lab: Lab, host_ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ovs = OvsServer(host_ns).start()
    try:
        monkeypatch.setenv("VIRTNET_OVSDB", ovs.remote)
        virtnetd.stop()
        virtnetd.start("--interval", "0.5")  # with the OVSDB address in its environment
        guest = lab.netns("guest")
        xml = NET.replace("vtdrift", "vtdovs")
        assert virtnetd.cli("net-define", "-", "--backend", "ovs", input=xml).returncode == 0
        assert virtnetd.cli("net-start", "drift").returncode == 0
        made = virtnetd.cli("net-port-create", "drift", "--netns", guest.name, "--json")
        ifname = json.loads(made.stdout)["attachment"]["ifname"]
        assert dhcp_lease(guest, "eth0") and can_ping(guest, "10.82.1.1")

        virtnetd.kill()
        ovs.vsctl("del-port", "vtdovs", ifname)  # lost while no daemon watched
        assert not can_ping(guest, "10.82.1.1", wait=0.5)
        virtnetd.start("--interval", "0.5")
        assert ifname in ovs.vsctl("list-ports", "vtdovs")
        assert "reconciled: re-added" in virtnetd.log_text()
        assert can_ping(guest, "10.82.1.1", count=3)
        assert virtnetd.cli("net-destroy", "drift").returncode == 0
    finally:
        virtnetd.cli("net-destroy", "drift")  # before OVS goes away
        ovs.stop()
