"""The fixtures later tests stand on: namespaces, veth LANs, ping/TCP checks, cleanup."""

from __future__ import annotations

import subprocess
import time

import pytest

from virtnet.testing import Lab, can_ping, can_tcp
from virtnet.testing.fixtures import needs_root

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
