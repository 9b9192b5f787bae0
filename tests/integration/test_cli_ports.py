"""The CLI verbs of issue 3 as a user runs them: net-port-*, net-update, net-dhcp-leases."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from virtnet.testing import Lab, Namespace, can_ping, dhcp_lease
from virtnet.testing.fixtures import CliRunner, needs_root

pytestmark = [needs_root, pytest.mark.root]

NET = """<network><name>cli</name><forward mode='nat'/><bridge name='vtbr-cli' stp='off'/>
<ip address='10.80.1.1' prefix='24'><dhcp><range start='10.80.1.100' end='10.80.1.150'/></dhcp></ip>
<portgroup name='quiet'><bandwidth><inbound average='800'/></bandwidth></portgroup></network>"""


@pytest.fixture
def started(virtnet_cli: CliRunner) -> CliRunner:
    assert virtnet_cli("net-define", "-", input=NET).returncode == 0
    assert virtnet_cli("net-start", "cli").returncode == 0
    return virtnet_cli


def test_port_lifecycle_from_the_cli(started: CliRunner, lab: Lab, host_ns: Namespace) -> None:
    guest = lab.netns("guest")
    made = started(
        "net-port-create", "cli", "--guest-netns", guest.name, "--ifname", "net0", "--json"
    )
    assert made.returncode == 0, made.stderr
    port = json.loads(made.stdout)
    assert port["attachment"]["guest_ifname"] == "net0" and port["mac"].startswith("52:54:00:")
    assert "net0" in guest.links()
    assert dhcp_lease(guest, "net0", hostname="cliguest")

    tap = started(
        "net-port-create", "cli", "--tap", "vtclitap", "--owner", "1000", "--portgroup", "quiet"
    )
    assert tap.returncode == 0, tap.stderr
    tap_uuid = tap.stdout.strip()
    assert "htb" in host_ns.exec("tc", "qdisc", "show", "dev", "vtclitap").stdout

    listed = json.loads(started("net-port-list", "cli", "--json").stdout)
    assert {p["uuid"] for p in listed} == {port["uuid"], tap_uuid}
    assert "vtclitap" in started("net-port-list", "cli").stdout

    xml = started("net-port-dumpxml", tap_uuid).stdout
    assert f"<uuid>{tap_uuid}</uuid>" in xml and "<group>quiet</group>" in xml
    assert "<plug type='network' bridge='vtbr-cli'/>" in xml and "ifname='vtclitap'" in xml

    leases = json.loads(started("net-dhcp-leases", "cli", "--json").stdout)
    assert [(lease["mac"], lease["hostname"]) for lease in leases] == [(port["mac"], "cliguest")]
    assert "cliguest" in started("net-dhcp-leases", "cli", "--mac", port["mac"]).stdout

    assert started("net-port-delete", tap_uuid).returncode == 0
    assert "vtclitap" not in host_ns.links()
    assert started("net-destroy", "cli").returncode == 0
    assert "net0" not in guest.links()  # destroying the network removed its ports


def test_net_update_from_the_cli(started: CliRunner, lab: Lab) -> None:
    host = "<host mac='52:54:00:00:dd:01' name='pinned' ip='10.80.1.42'/>"
    done = started("net-update", "cli", "add", "ip-dhcp-host", host, "--live", "--config")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Updated network cli persistent config and live state"
    txt = "<txt name='said' value='x'/>"
    current = started("net-update", "cli", "add", "dns-txt", txt)  # --current: the live one
    assert current.stdout.strip() == "Updated network cli live state", current.stderr
    assert "10.80.1.42" in started("net-dumpxml", "cli").stdout
    assert "10.80.1.42" in started("net-dumpxml", "cli", "--inactive").stdout
    guest = lab.netns("pinned")
    made = started("net-port-create", "cli", "--netns", guest.name, "--mac", "52:54:00:00:dd:01")
    assert made.returncode == 0, made.stderr
    assert dhcp_lease(guest) == "10.80.1.42"
    assert can_ping(guest, "10.80.1.1")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["net-port-create", "cli", "--tap", "x", "--netns", "y"], "--guest-netns"),
        (["net-port-create", "cli", "--mac", "01:00:5e:00:00:01"], "port/mac"),
        (["net-port-create", "cli", "--portgroup", "nope"], "port/portgroup"),
        (["net-port-create", "cli", "--netns", "vt-no-such-ns"], "port/netns"),
        (
            ["net-update", "cli", "add", "dns-txt", "<txt name='x' value='a\"b'/>"],
            "network/dns/txt/@value",
        ),
        (["net-update", "cli", "add", "ip-dhcp-host", "<host mac='zz' ip='10.80.1.9'/>"], "@mac"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    started: CliRunner, host_ns: Namespace, args: list[str], field: str
) -> None:
    links, xml = host_ns.links(), started("net-dumpxml", "cli").stdout
    done = started(*args)
    assert done.returncode in (1, 2), done
    assert field in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert host_ns.links() == links
    assert started("net-dumpxml", "cli").stdout == xml
    assert json.loads(started("net-port-list", "cli", "--json").stdout) == []


def test_an_active_network_refuses_a_dry_run_start_as_net_start_would(started: CliRunner) -> None:
    dry = started("net-start", "cli", "--dry-run")
    assert dry.returncode == 1 and dry.stderr == "error: network 'cli' is already active\n"
    info = started("net-info", "cli").stdout
    assert "Backend:        linuxbridge" in info


def test_a_namespace_name_with_no_namespace_behind_it_is_refused(
    started: CliRunner, host_ns: Namespace
) -> None:
    """``ip netns add`` run inside another mount namespace (``ip netns exec``, a runtime's
    private mounts) leaves only an empty file here: said so, not a bare EINVAL."""
    import os
    from pathlib import Path

    hollow = Path("/run/netns") / f"vt-hollow-{os.getpid()}"
    hollow.touch()
    try:
        before = host_ns.links()
        refused = started("net-port-create", "cli", "--netns", hollow.name)
        assert refused.returncode == 2, refused.stderr
        assert "is not a network namespace here" in refused.stderr
        assert refused.stderr.count("\n") == 1 and host_ns.links() == before
        assert json.loads(started("net-port-list", "cli", "--json").stdout) == []
    finally:
        hollow.unlink()


def test_graph_draws_every_port_with_its_guest_mac_lease_and_guard(
    started: CliRunner, lab: Lab, tmp_path: Path
) -> None:
    guest = lab.netns("drawn")
    made = started("net-port-create", "cli", "--guest-netns", guest.name, "--json")
    mac = json.loads(made.stdout)["mac"]
    lease = dhcp_lease(guest)
    assert lease
    assert started("net-port-create", "cli", "--tap", "vtdrawn", "--no-spoof-check").returncode == 0
    dot = started("graph")
    assert dot.returncode == 0, dot.stderr
    for shown in (f"container {guest.name}:eth0", mac, f"lease {lease}", "tap vtdrawn",
                  "NO anti-spoofing", "bridge vtbr-cli", "cli (nat, 10.80.1.1/24)"):  # fmt: skip
        assert shown in dot.stdout, shown
    svg = tmp_path / "hosts.svg"
    drawn = started("graph", "cli", "-o", str(svg))
    assert drawn.returncode == 0, drawn.stderr
    from lxml import etree

    root = etree.fromstring(svg.read_bytes())  # Graphviz laid it out: labels are SVG text
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {f"lease {lease}", "NO anti-spoofing", mac, "tap vtdrawn"} <= texts
    missing = started("graph", "nope")
    assert missing.returncode == 1 and missing.stderr == "error: network 'nope' does not exist\n"


def test_many_ports_at_once_are_all_made_or_none(started: CliRunner, host_ns: Namespace) -> None:
    """``--count``: one uuid per line, no progress when piped; a failure half-way (the third
    port's plan fails) removes the two already made; options naming one port are refused."""
    made = started("net-port-create", "cli", "--count", "3")
    assert made.returncode == 0, made.stderr
    uuids = made.stdout.split()
    assert len(uuids) == 3 and made.stderr == ""  # piped: no progress line

    def ports() -> set[str]:
        return {p["uuid"] for p in json.loads(started("net-port-list", "cli", "--json").stdout)}

    def taps() -> set[str]:
        return {link for link in host_ns.links() if link.startswith("vnet")}

    assert ports() == set(uuids) and len(taps()) == 3
    failed = started("net-port-create", "cli", "--count", "4",
                     env={"VIRTNET_FAULT": "port:raise:1@3"})  # fmt: skip
    assert failed.returncode == 1 and "injected fault before step 1" in failed.stderr
    assert ports() == set(uuids) and len(taps()) == 3  # the two made before: gone again
    refused = started("net-port-create", "cli", "--count", "2", "--mac", "52:54:00:00:00:09")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--mac" in refused.stderr and "--count 2" in refused.stderr


def test_a_terminal_sees_progress_and_a_pipe_only_results(
    started: CliRunner, host_ns: Namespace
) -> None:
    """On a terminal (stderr a pty) bulk creation draws a live line and clears it at the end;
    stdout still carries exactly the uuids."""
    state, run = started.state_dir, started.run_dir  # type: ignore[attr-defined]
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "virtnet.cli", "--netns", host_ns.name, "--state-dir",
             str(state), "--run-dir", str(run), "net-port-create", "cli", "--count", "5"],
            stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120, check=False,
            env={**os.environ, "TERM": "xterm"},
        )  # fmt: skip
        os.close(slave)
        slave = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the writer is gone
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert done.returncode == 0 and len(done.stdout.split()) == 5
    shown = drawn.decode()
    assert "cli: ports [" in shown and "/5" in shown and "port 1" in shown
    assert shown.endswith("\r\x1b[K")  # cleared: the terminal is left as it was
