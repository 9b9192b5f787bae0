"""dnsmasq as virtnet configures it, asked by real clients: the lines that mean what
libvirt's mean (SRV defaults, the MTU option, localPtr) and DNS that stays inside an isolated
network."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from virtnet.testing import Lab, Namespace, dhcp_lease
from virtnet.testing.fixtures import needs_root
from virtnet.testing.world import UPLINK_PEER, World

pytestmark = [needs_root, pytest.mark.root]

NAT = """<network><name>libv</name><forward mode='nat'/><bridge name='vtbr-libv' stp='off'/>
  <mtu size='1400'/>
  <dns><srv service='ldap' protocol='udp' target='dir.example.com' priority='55' weight='555'/>
  <host ip='10.84.0.9'><hostname>printer</hostname></host></dns>
  <ip address='10.84.0.1' prefix='24' localPtr='yes'><dhcp>
  <range start='10.84.0.100' end='10.84.0.150'/></dhcp></ip></network>"""

OPTIONS_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "mtu=$mtu" > "$OUT"
exit 0
"""


def lookup(ns: Namespace, rtype: str, name: str, server: str) -> str:
    done = ns.exec("busybox", "nslookup", f"-type={rtype}", name, server, check=False)
    return done.stdout + done.stderr


def test_srv_defaults_mtu_and_local_ptr_reach_real_clients(world: World) -> None:
    world.vn.create_network(NAT)
    guest, _ = world.plug("libv", "g")
    fd, script = tempfile.mkstemp(prefix="vt-opts-", suffix=".sh")
    out = script + ".out"
    try:
        os.write(fd, OPTIONS_SCRIPT.encode())
        os.close(fd)
        os.chmod(script, 0o700)
        guest.exec("env", f"OUT={out}", "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t",
                   "6", "-T", "1", "-O", "mtu", "-s", script)  # fmt: skip
        with open(out) as f:
            assert f.read().strip() == "mtu=1400"  # dhcp-option=option:mtu
    finally:
        for path in (script, out):
            if os.path.exists(path):
                os.unlink(path)
    assert dhcp_lease(guest)
    # SRV: priority and weight kept though no port was given (libvirt's port default, 1)
    assert "service = 55 555 1 dir.example.com" in lookup(guest, "srv", "_ldap._udp", "10.84.0.1")
    # localPtr: the reverse zone is answered here: known names, and NXDOMAIN for the rest
    assert "printer" in lookup(guest, "ptr", "9.0.84.10.in-addr.arpa", "10.84.0.1")
    assert "NXDOMAIN" in lookup(guest, "ptr", "77.0.84.10.in-addr.arpa", "10.84.0.1")


ISOLATED = """<network><name>iso</name><bridge name='vtbr-isod' stp='off'/>
  <ip address='10.85.0.1' prefix='24'><dhcp><range start='10.85.0.100' end='10.85.0.150'/>
  </dhcp></ip></network>"""
FORWARDING = """<network><name>fwd</name><forward mode='nat'/><bridge name='vtbr-fwdd' stp='off'/>
  <ip address='10.86.0.1' prefix='24'><dhcp><range start='10.86.0.100' end='10.86.0.150'/>
  </dhcp></ip></network>"""


def _queries_seen_outside(world: World, guest: Namespace, server: str) -> str:
    capture = world.outside.popen("tcpdump", "-n", "-l", "-i", "eth0", "udp port 53",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert capture.stderr is not None
        assert any("listening on" in capture.stderr.readline() for _ in range(3))
        lookup(guest, "a", "leak-check.example.org", server)
        time.sleep(0.5)
    finally:
        capture.terminate()
    return capture.communicate(timeout=10)[0]


def _machine_resolvers() -> list[str]:
    with open("/etc/resolv.conf") as f:
        found = [line.split()[1] for line in f if line.startswith("nameserver ")]
    return [a for a in found if ":" not in a and not a.startswith("127.")]


def test_an_isolated_networks_dns_never_asks_upstream(world: World) -> None:
    # dnsmasq reads the machine's /etc/resolv.conf: its servers' addresses are put on the
    # outside peer (so every query stays in the test's namespaces), reached by a default route
    resolvers = _machine_resolvers()
    if not resolvers:
        pytest.skip("this machine's resolvers are local (127.x): upstream queries not visible")
    for address in resolvers:
        world.outside.ip("addr", "add", f"{address}/32", "dev", "lo")
    world.host.ip("route", "add", "default", "via", UPLINK_PEER)
    world.vn.create_network(FORWARDING)
    world.vn.create_network(ISOLATED)
    nat_guest, _ = world.plug("fwd", "n")
    iso_guest, _ = world.plug("iso", "i")
    assert dhcp_lease(nat_guest) and dhcp_lease(iso_guest)
    # the control: a NAT network's dnsmasq does ask the (relocated) upstream servers
    assert "leak-check.example.org" in _queries_seen_outside(world, nat_guest, "10.86.0.1")
    # the isolated network answers locally and asks no one
    assert "leak-check.example.org" not in _queries_seen_outside(world, iso_guest, "10.85.0.1")


FORWARDERS = f"""<network><name>fwds</name><forward mode='nat'/><bridge name='vtbr-fwds' stp='off'/>
  <dns forwardPlainNames='no'>
    <forwarder addr='{UPLINK_PEER}'/>
    <forwarder domain='lab.example'/>
  </dns>
  <ip address='10.87.0.1' prefix='24'><dhcp><range start='10.87.0.100' end='10.87.0.150'/>
  </dhcp></ip></network>"""


def _asked_outside(world: World, guest: Namespace, names: list[str]) -> str:
    """The DNS queries that reached the outside peer while ``guest`` looked ``names`` up."""
    capture = world.outside.popen("tcpdump", "-n", "-l", "-i", "eth0", "udp port 53",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert capture.stderr is not None
        assert any("listening on" in capture.stderr.readline() for _ in range(3))
        for name in names:
            lookup(guest, "a", name, "10.87.0.1")
        time.sleep(0.5)
    finally:
        capture.terminate()
    return capture.communicate(timeout=10)[0]


def test_plain_names_stay_home_and_a_domain_only_forwarder_uses_the_usual_servers(
    world: World,
) -> None:
    # forwardPlainNames='no' (local=//, domain-needed): a name without a dot is never sent
    # upstream; <forwarder domain='lab.example'/> (server=/lab.example/#) sends that domain to
    # the usual servers, here the one <forwarder addr> names (dnsmasq's server=/d/ alone
    # would have answered it locally, never asking anyone)
    world.vn.create_network(FORWARDERS)
    guest, _ = world.plug("fwds", "g")
    assert dhcp_lease(guest)
    seen = _asked_outside(world, guest, ["plainname", "db.lab.example", "www.example.org"])
    assert "plainname" not in seen
    assert "db.lab.example" in seen and "www.example.org" in seen


def test_virtnetd_follows_resolv_conf_without_an_inotify_per_dnsmasq(
    lab: Lab, host_ns: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dnsmasq forwards to the servers of the host's resolv.conf through one servers file
    virtnet writes (a dnsmasq that polls resolv.conf holds an inotify instance, and the
    kernel allows 128: the 129th network failed to start); when resolv.conf is replaced,
    virtnetd rewrites the file and the running dnsmasq asks the new server."""
    from virtnet.testing.daemon import Daemon
    from virtnet.testing.fixtures import run_dir_for_test

    resolv = tmp_path / "etc" / "resolv.conf"
    resolv.parent.mkdir()
    resolv.write_text("nameserver 198.51.100.53\n")
    monkeypatch.setenv("VIRTNET_RESOLV_CONF", str(resolv))
    outside = lab.netns("out")
    lab.cable(host_ns, "eth0", outside, "eth0")
    lab.address(host_ns, "eth0", "203.0.113.1/24")
    lab.address(outside, "eth0", "203.0.113.2/24")
    for address in ("198.51.100.53", "198.51.100.54"):
        outside.ip("addr", "add", f"{address}/32", "dev", "lo")
    host_ns.ip("route", "add", "default", "via", "203.0.113.2")
    daemon = Daemon(host_ns.name, tmp_path / "state", run_dir_for_test(), lab).start()
    try:
        assert daemon.cli("net-create", "-", input=FORWARDING).returncode == 0
        guest = lab.netns("g")
        assert daemon.cli("net-port-create", "fwd", "--netns", guest.name).returncode == 0
        assert dhcp_lease(guest)
        [pid] = [p for p in host_ns.pids() if Path(f"/proc/{p}/comm").read_text() == "dnsmasq\n"
                 and Path(f"/proc/{p}/status").read_text().count("Uid:\t0") == 0][:1]  # fmt: skip
        fds = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
        assert "anon_inode:inotify" not in fds
        assert "> 198.51.100.53.53:" in _seen_outside(outside, guest, "first.example.org")
        replacement = resolv.with_name("resolv.conf.new")
        replacement.write_text("nameserver 198.51.100.54\n")
        replacement.rename(resolv)  # as resolvconf and NetworkManager do
        began = time.monotonic()
        while "> 198.51.100.54.53:" not in _seen_outside(outside, guest, "second.example.org"):
            assert time.monotonic() - began < 10, daemon.log_text()
    finally:
        listed = daemon.cli("net-destroy", "fwd")
        daemon.stop()
        shutil.rmtree(daemon.run_dir, ignore_errors=True)
    assert listed.returncode == 0


def _seen_outside(outside: Namespace, guest: Namespace, name: str) -> str:
    capture = outside.popen("tcpdump", "-n", "-l", "-i", "eth0", "udp port 53",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert capture.stderr is not None
        assert any("listening on" in capture.stderr.readline() for _ in range(3))
        lookup(guest, "a", name, "10.86.0.1")
        time.sleep(0.3)
    finally:
        capture.terminate()
    return capture.communicate(timeout=10)[0]
