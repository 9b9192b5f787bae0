"""The fixtures later tests stand on: namespaces, veth LANs, ping/TCP checks, cleanup."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from virtnet import pids
from virtnet.host import filesystem_type
from virtnet.testing import Lab, Namespace, can_ping, can_tcp
from virtnet.testing.fixtures import needs_root, run_dir_for_test

pytestmark = [needs_root, pytest.mark.root]


def test_veth_lan_carries_ping_and_tcp_and_shows_the_source(lab: Lab) -> None:
    a, b, c = lab.netns("a"), lab.netns("b"), lab.netns("c")
    lab.cable(a, "eth0", b, "eth0")
    lab.address(a, "eth0", "10.250.0.1/24")
    lab.address(b, "eth0", "10.250.0.2/24")
    assert can_ping(a, "10.250.0.2")
    assert can_tcp(a, b, "10.250.0.2") == "10.250.0.1"
    assert not can_ping(c, "10.250.0.2")  # c has no link at all
    assert can_tcp(c, b, "10.250.0.2", timeout=0.5) is None


def test_cleanup_removes_namespaces_and_their_processes() -> None:
    made = Lab()
    ns = made.netns("gone")
    sleeper = ns.popen("sleep", "300")
    # `ip netns exec` enters the namespace a moment after Popen returns: wait for it (was a
    # flaky assertion on a loaded machine)
    deadline = time.monotonic() + 10
    while not ns.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ns.pids()
    made.cleanup()
    assert sleeper.wait(timeout=10) != 0
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.name not in names


def test_virtnet_acts_inside_the_host_namespace_only(virtnet_cli, host_ns) -> None:  # type: ignore[no-untyped-def]
    xml = "<network><name>inns</name></network>"
    assert virtnet_cli("net-define", "-", input=xml).returncode == 0
    assert "inns" in virtnet_cli("net-list", "--all").stdout


def test_the_api_records_the_namespace_but_never_moves_the_caller(host_ns, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from virtnet.api import Virtnet
    from virtnet.host import make_host

    before = os.readlink("/proc/thread-self/ns/net")
    with Virtnet(tmp_path / "s", tmp_path / "r", netns=host_ns.name) as vn:
        assert vn.host.netns == host_ns.name
    assert os.readlink("/proc/thread-self/ns/net") == before
    default = make_host(netns=host_ns.name)
    assert str(default.state_dir).endswith(f"/netns/{host_ns.name}")
    assert str(default.run_dir).endswith(f"/netns/{host_ns.name}")


def test_a_killed_runs_namespaces_and_processes_are_reaped_by_the_next() -> None:
    """kill -9 of a process that made a lab (a test run, a conformance run) leaves its
    namespaces and what runs in them; the next session's start removes them, and leaves the
    labs of processes still running alone."""
    import signal
    import sys
    import time

    from virtnet.testing.netns import reap_stale

    maker = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from virtnet.testing.netns import Lab\n"
         "from virtnet.testing.fixtures import run_dir_for_test\n"
         "lab = Lab(); ns = lab.netns('doomed')\n"
         "lab.track(ns.popen('sleep', '600'))\n"
         "print(ns.name, run_dir_for_test(), flush=True); time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert maker.stdout is not None
    name, its_run_dir = maker.stdout.readline().split()
    mine = Lab()
    ours = mine.netns("alive")  # a running maker's lab: not stale
    our_run_dir = run_dir_for_test()
    try:
        deadline = time.monotonic() + 10
        while not Namespace(name).pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        sleepers = Namespace(name).pids()
        assert sleepers
        maker.send_signal(signal.SIGKILL)
        maker.wait(timeout=10)
        assert os.path.exists(f"/run/netns/{name}")  # left behind by the kill
        assert name in reap_stale()
        assert not os.path.exists(f"/run/netns/{name}")
        assert not any(pids.running(pid) for pid in sleepers)
        assert os.path.exists(f"/run/netns/{ours.name}")
        assert not os.path.exists(its_run_dir) and our_run_dir.is_dir()  # its test's run dir
        assert filesystem_type(our_run_dir) == "tmpfs"  # as a host's /run: see run_base
        assert filesystem_type(Path("/proc/self")) == "proc"
    finally:
        mine.cleanup()
        shutil.rmtree(our_run_dir, ignore_errors=True)
