"""virtnetd with the thin client: same output as in-process, permissions, concurrency,
autostart, events. Drift repair and crash safety are in test_daemon_repair.py."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from virtnet.client import Client
from virtnet.errors import Conflict, InvalidInput
from virtnet.testing import Lab, Namespace, dhcp_lease
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import needs_root, run_dir_for_test
from virtnet.testing.guest import release_lease

pytestmark = [needs_root, pytest.mark.root]


def nat_xml(name: str, octet: int, bridge: str | None = None) -> str:
    return (
        f"<network><name>{name}</name><forward mode='nat'/>"
        f"<bridge name='{bridge or 'vtd' + str(octet)}' stp='off'/>"
        f"<ip address='10.81.{octet}.1' prefix='24'><dhcp>"
        f"<range start='10.81.{octet}.10' end='10.81.{octet}.90'/></dhcp></ip></network>"
    )


@pytest.fixture
def spare(lab: Lab, host_ns: Namespace, tmp_path: Path) -> Iterator[Daemon]:
    """A daemon for the host namespace, not started yet; stopped and its run dir removed."""
    daemon = Daemon(host_ns.name, tmp_path / "state", run_dir_for_test(), lab)
    yield daemon
    daemon.stop()
    shutil.rmtree(daemon.run_dir, ignore_errors=True)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a daemon's exited child waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


@pytest.mark.parametrize("client", ["virtnet", "virtnet-py"])
def test_thin_client_prints_what_the_in_process_cli_prints(
    virtnetd: Daemon, tmp_path: Path, client: str
) -> None:
    """Both thin clients (the compiled one and the Python one) print, byte for byte, what the
    CLI prints in-process, with the same exit code, for good, bad and hostile input."""
    xml = tmp_path / "shared.xml"
    xml.write_text(nat_xml("shared", 1))
    latin1, utf16 = tmp_path / "latin1.xml", tmp_path / "utf16.xml"
    latin1.write_bytes("<network><name>caf\xe9</name></network>".encode("latin-1"))
    utf16.write_bytes("<network><name>wide</name></network>".encode("utf-16"))
    commands: list[tuple[tuple[str, ...], str | None]] = [
        (("net-define", str(xml)), None),
        (("net-define", "-"), nat_xml("other", 2)),
        (("net-define", "-"), "<network><name>bad</name><forward mode='bogus'/></network>"),
        (("net-define", str(tmp_path / "missing.xml")), None),
        (("net-start", "nope"), None),
        (("net-list", "--all"), None),
        (("net-info", "shared"), None),
        (("net-dumpxml", "shared"), None),
        (("net-list", "--all", "--json"), None),
        (("net-autostart", "other"), None),
        (("net-destroy", "shared"), None),
        (("net-undefine", "nope"), None),
        (("frobnicate",), None),
        # hostile or odd input: the same one-line errors both ways
        (("net-define", str(latin1)), None),
        (("net-define", str(utf16)), None),
        (("net-define", str(tmp_path)), None),
        (("net-define", "/dev/null"), None),
        (("net-info", "../../etc/passwd"), None),
        (("net-port-create", "shared", "--owner", "-1"), None),
        (("net-info", 'caf\xe9 \u2603 \U0001f600 "q" \\ \t\x01'), None),
        (("net-info", "--", "-dash"), None),
        (("net-dumpxml", str(xml), str(xml), "shared"), None),  # a file named twice
    ]
    for args, stdin in commands:
        thin = virtnetd.cli(*args, input=stdin, client=client)
        local = virtnetd.cli(*args, input=stdin, env={"VIRTNET_DAEMON": "never"})
        assert (thin.returncode, thin.stdout, thin.stderr) == (
            local.returncode,
            local.stdout,
            local.stderr,
        ), args
    assert virtnetd.cli("net-define", "-", input="<network>").returncode == 2
    assert virtnetd.cli("net-start", "nope").stderr == "error: network 'nope' does not exist\n"
    started = virtnetd.cli("net-start", "shared")
    assert (started.returncode, started.stdout) == (0, "Network shared started\n")
    assert virtnetd.cli("net-check", "shared").stdout == "Network shared is in sync\n"
    for args in (("net-destroy", "shared"), ("net-undefine", "shared"), ("net-undefine", "other")):
        assert virtnetd.cli(*args).returncode == 0, args


def test_without_a_daemon_the_cli_acts_in_process_or_fails_when_asked(spare: Daemon) -> None:
    daemon = spare
    required = daemon.cli("net-list")
    assert required.returncode == 1
    assert "virtnetd is not running" in required.stderr and "Traceback" not in required.stderr
    bogus = daemon.cli("net-list", env={"VIRTNET_DAEMON": "sometimes"})
    assert bogus.returncode == 2 and bogus.stderr.startswith("error: VIRTNET_DAEMON: ")
    auto = daemon.cli("net-define", "-", input=nat_xml("solo", 3), env={"VIRTNET_DAEMON": "auto"})
    assert auto.returncode == 0, auto.stderr
    daemon.start()  # the daemon adopts what the in-process CLI defined
    assert "solo" in daemon.cli("net-list", "--all").stdout
    daemon.stop()


def test_the_thin_client_loads_neither_site_nor_the_datapath(virtnetd: Daemon) -> None:
    """What keeps a whole CLI process of the Python client near the interpreter's own start
    (bin/virtnet, installed as virtnet-py where the compiled client is `virtnet`)."""
    done = subprocess.run(
        [str(BIN / "virtnet-py"), *virtnetd.host_args, "net-list", "--all"],
        capture_output=True,
        text=True,
        env={**os.environ, "VIRTNET_DAEMON": "require", "PYTHONPROFILEIMPORTTIME": "1"},
        timeout=30,
    )
    assert done.returncode == 0 and "Name" in done.stdout, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "virtnet.thin" in imported
    for heavy in ("site", "virtnet.api", "virtnet.cli", "pyroute2", "click", "typing", "re"):
        assert heavy not in imported, heavy


def test_the_socket_is_root_only(virtnetd: Daemon) -> None:
    assert virtnetd.socket.stat().st_mode & 0o777 == 0o600
    refused = subprocess.run(
        [str(BIN / "virtnet"), *virtnetd.host_args, "net-list"],
        capture_output=True,
        text=True,
        user="nobody",
        env={**os.environ, "VIRTNET_DAEMON": "require"},
        timeout=30,
    )
    assert refused.returncode == 1
    assert "permission denied" in refused.stderr and "Traceback" not in refused.stderr


def test_a_group_member_may_use_the_socket_and_others_may_not(
    spare: Daemon, tmp_path: Path
) -> None:
    config = tmp_path / "virtnetd.conf"
    config.write_text("[virtnetd]\ngroup = nogroup\ninterval = 2\n")
    daemon = spare.start("--config", str(config))
    assert daemon.socket.stat().st_mode & 0o777 == 0o660
    assert daemon.socket.stat().st_gid == grp.getgrnam("nogroup").gr_gid
    script = (
        "from virtnet.client import Client; import sys; "
        f"c = Client.connect({str(daemon.socket)!r}); print(c.hello()['protocol'])"
    )

    def hello_as_nobody(group: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            user="nobody",
            group=group,
            extra_groups=[],
            timeout=30,
        )

    member = hello_as_nobody("nogroup")
    assert member.stdout.strip() == "1", member.stderr
    stranger = hello_as_nobody("daemon")
    assert stranger.returncode != 0 and "PermissionDenied" in stranger.stderr
    daemon.stop()


def test_twenty_clients_at_once_get_answers_and_state_matches_the_kernel(
    virtnetd: Daemon, host_ns: Namespace
) -> None:
    assert virtnetd.cli("net-define", "-", input=nat_xml("contested", 100)).returncode == 0

    def client(i: int) -> list[subprocess.CompletedProcess[str]]:
        name = f"c{i}"
        steps = [
            virtnetd.cli("net-create", "-", input=nat_xml(name, 10 + i)),
            virtnetd.cli("net-start", "contested"),  # one wins, the others get a conflict
            virtnetd.cli("net-list", "--json"),
            virtnetd.cli("net-info", name, "--json"),
        ]
        if i % 2:
            steps.append(virtnetd.cli("net-destroy", name))
        return steps

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(client, range(20)))
    for i, steps in enumerate(results):
        for done in steps:
            assert "Traceback" not in done.stderr
        assert steps[0].returncode == 0, steps[0].stderr
        assert steps[2].returncode == 0 and json.loads(steps[2].stdout)
        assert json.loads(steps[3].stdout)["name"] == f"c{i}"
    contested = [steps[1] for steps in results]
    assert sum(r.returncode == 0 for r in contested) == 1
    for lost in (r for r in contested if r.returncode != 0):
        assert lost.stderr == "error: network 'contested' is already active\n"

    active = {row["name"] for row in json.loads(virtnetd.cli("net-list", "--json").stdout)}
    assert active == {"contested"} | {f"c{i}" for i in range(0, 20, 2)}
    links = host_ns.links()
    for i in range(20):
        assert (f"vtd{10 + i}" in links) == (i % 2 == 0)
    dnsmasqs = {
        pid for pid in host_ns.pids() if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq"
    }
    # one per network (each has a helper child that runs its lease script)
    parents = {pid for pid in dnsmasqs if _ppid(pid) not in dnsmasqs}
    assert len(parents) == len(active)
    for name in active:
        assert virtnetd.cli("net-check", name).returncode == 0


def test_autostart_networks_start_in_dependency_order(spare: Daemon, host_ns: Namespace) -> None:
    daemon = spare.start()
    onto = "<network><name>{name}</name><forward mode='bridge'/><bridge name='{bridge}'/></network>"
    # 'a-guests' sorts first but needs the bridge 'z-nat' makes
    for args, stdin in (
        (("net-define", "-"), nat_xml("z-nat", 40, bridge="vtdauto")),
        (("net-define", "-"), onto.format(name="a-guests", bridge="vtdauto")),
        (("net-define", "-"), onto.format(name="later", bridge="vtdlater")),
        (("net-autostart", "z-nat"), None),
        (("net-autostart", "a-guests"), None),
        (("net-autostart", "later"), None),
    ):
        assert daemon.cli(*args, input=stdin).returncode == 0
    daemon.stop()
    daemon.start()
    active = {row["name"] for row in json.loads(daemon.cli("net-list", "--json").stdout)}
    assert active == {"z-nat", "a-guests"}  # 'later' waits for its host bridge
    host_ns.ip("link", "add", "vtdlater", "type", "bridge")
    deadline = time.monotonic() + 5
    while "later" not in daemon.cli("net-list").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "later" in daemon.cli("net-list").stdout
    for name in ("a-guests", "later", "z-nat"):
        assert daemon.cli("net-destroy", name).returncode == 0
    host_ns.ip("link", "del", "vtdlater")
    daemon.stop()


def test_events_arrive_in_order_from_start_to_dhcp_lease(virtnetd: Daemon, lab: Lab) -> None:
    events: list[dict[str, Any]] = []
    subscribed = threading.Event()

    def listen() -> None:
        with virtnetd.client() as client:
            stream = client.events()
            subscribed.set()
            for item in stream:
                events.append(item)
                if item["kind"] == "lease-added":
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    cli_events = subprocess.Popen(
        [
            str(BIN / "virtnet"),
            *virtnetd.host_args,
            "event",
            "--loop",
            "--json",
            "--timeout",
            "20",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "VIRTNET_DAEMON": "require"},
    )
    lab.track(cli_events)
    time.sleep(0.5)
    assert subscribed.wait(5)
    guest = lab.netns("guest")
    assert virtnetd.cli("net-define", "-", input=nat_xml("events", 60)).returncode == 0
    assert virtnetd.cli("net-start", "events").returncode == 0
    made = virtnetd.cli("net-port-create", "events", "--netns", guest.name, "--json")
    port = json.loads(made.stdout)
    assert dhcp_lease(guest, "eth0", hostname="evguest")
    listener.join(timeout=10)
    kinds = [(e["kind"], e["network"]) for e in events]
    assert kinds == [
        ("network-defined", "events"),
        ("network-started", "events"),
        ("port-plugged", "events"),
        ("lease-added", "events"),
    ]
    assert events[2]["port"] == port["uuid"]
    assert events[3]["detail"]["mac"] == port["mac"]
    assert events[3]["detail"]["hostname"] == "evguest"
    times = [e["time"] for e in events]
    assert times == sorted(times)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + 4)) and len({e["boot"] for e in events}) == 1
    plugged = events[2]["detail"]  # what a stack tracking its guests needs
    assert (plugged["mac"], plugged["ifname"], plugged["netns"]) == (
        port["mac"], port["attachment"]["ifname"], guest.name,
    )  # fmt: skip
    with virtnetd.client() as client:  # a stack back from a restart: what it missed, in order
        replay = client.events(since=seqs[1], boot=events[1]["boot"])
        assert [next(replay)["seq"] for _ in range(2)] == seqs[2:]
    with virtnetd.client() as client:  # a position from another daemon: read the state again
        lost = next(client.events(since=seqs[1], boot="0" * 32))
        assert lost["kind"] == "events-lost" and "the daemon restarted" in lost["detail"]["why"]

    with Client.connect(virtnetd.socket, timeout=15) as client:  # the guest gives it back
        stream = client.events()
        assert release_lease(guest, "eth0")
        later = []
        for item in stream:
            later.append(item)
            if item["kind"] == "lease-expired":
                break
    assert later[-1]["kind"] == "lease-expired", later
    assert later[-1]["detail"]["mac"] == port["mac"]
    assert virtnetd.cli("net-destroy", "events").returncode == 0
    printed: list[str] = []
    assert cli_events.stdout is not None
    for line in cli_events.stdout:  # until the network-stopped event, then stop the client
        printed.append(json.loads(line)["kind"])
        if printed[-1] == "network-stopped":
            break
    cli_events.kill()
    assert printed[:6] == [
        "network-defined",
        "network-started",
        "port-plugged",
        "lease-added",
        "lease-expired",
        "network-stopped",
    ]


def test_python_clients_get_the_api_and_its_errors(virtnetd: Daemon) -> None:
    with virtnetd.client() as vn:
        assert vn.hello()["protocol"] == 1
        made = vn.define_network(nat_xml("py", 70))
        assert made["name"] == "py" and "<name>py</name>" in made["xml"]
        vn.start_network("py")
        assert [r["name"] for r in vn.list_networks()] == ["py"]
        with pytest.raises(Conflict, match="already active"):
            vn.start_network("py")
        with pytest.raises(InvalidInput) as bad:
            vn.define_network("<network><name>x</name><forward mode='bogus'/></network>")
        assert bad.value.subject == "network/forward/@mode" and bad.value.exit_code == 2
        assert vn.check_network("py") == []
        vn.destroy_network("py")
        assert [r["name"] for r in vn.list_networks(inactive=False)] == []


def test_one_daemon_per_host_and_garbage_gets_an_error(virtnetd: Daemon) -> None:
    second = subprocess.run(
        [str(BIN / "virtnetd"), *virtnetd.host_args], capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1 and "already running" in second.stderr
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(str(virtnetd.socket))
        raw.sendall(b'{"jsonrpc":"2.0","id":1,"method":"frobnicate"}\n')
        assert json.loads(raw.recv(65536))["error"]["code"] == -32601
        raw.sendall(b'{"jsonrpc":"2.0","id":2,"method":"dumpxml","params":{"nme":"x"}}\n')
        assert json.loads(raw.recv(65536))["error"]["code"] == -32602
        raw.sendall(b"not json\n")
        assert json.loads(raw.recv(65536))["error"]["code"] == -32700
    assert virtnetd.cli("net-list").returncode == 0  # still serving


def _ask(raw: socket.socket, line: bytes) -> dict[str, Any]:
    raw.sendall(line)
    reader = raw.makefile("rb")
    answer: dict[str, Any] = json.loads(reader.readline())
    return answer


def test_a_misbehaving_client_gets_spec_errors_and_others_keep_being_served(
    virtnetd: Daemon,
) -> None:
    def connect() -> socket.socket:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(str(virtnetd.socket))
        raw.settimeout(30)
        return raw

    with connect() as raw:
        # wrong-type params: -32602 naming the parameter, not an internal error
        bad = _ask(raw, b'{"jsonrpc":"2.0","id":1,"method":"dumpxml","params":{"name":5}}\n')
        assert bad["error"]["code"] == -32602 and "'name'" in bad["error"]["message"]
        # not an object, and a batch: -32600, and the connection goes on
        for line in (b"[1,2]\n", b'"hello"\n', b"[]\n"):
            assert _ask(raw, line)["error"]["code"] == -32600
        # an id that parses to infinity: refused, answered with valid JSON
        inf = _ask(raw, b'{"jsonrpc":"2.0","id":1e400,"method":"hello"}\n')
        assert inf["error"]["code"] == -32600 and inf["id"] is None
        assert _ask(raw, b'{"jsonrpc":"2.0","id":7,"method":"hello"}\n')["result"]["protocol"]
    with connect() as raw:  # 100,000 levels deep: a parse error, not a dropped connection
        deep = b'{"jsonrpc":"2.0","id":1,"params":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
        assert _ask(raw, deep)["error"]["code"] in (-32700, -32600)
    with connect() as raw:  # over the size of one request: refused before it is all read
        raw.sendall(b'{"jsonrpc":"2.0","id":1,"method":"define_network","params":{"xml":"')
        answer = b""
        with contextlib.suppress(OSError):
            for _ in range(200):  # 12.8 MiB, more than a request may be
                raw.sendall(b"a" * (64 << 10))
        with contextlib.suppress(OSError):
            answer = raw.recv(65536)
        assert b"-32600" in answer and b"longer than" in answer
    # many large requests at once: bounded memory, and the daemon answers everyone after
    senders = [connect() for _ in range(8)]
    for raw in senders:
        with contextlib.suppress(OSError):
            raw.sendall(
                b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"x":"' + b"a" * (9 << 20)
            )
    rss_kib = int(next(line.split()[1] for line in
                       Path(f"/proc/{virtnetd.proc.pid if virtnetd.proc else 0}/status").read_text().splitlines()
                       if line.startswith("VmRSS")))  # fmt: skip
    for raw in senders:
        raw.close()
    assert rss_kib < 200 * 1024, f"virtnetd holds {rss_kib} KiB"
    assert virtnetd.cli("net-list").returncode == 0


def test_run_dir_files_have_the_documented_modes_and_the_pid_file_goes(
    virtnetd: Daemon,
) -> None:
    import grp
    import stat

    assert virtnetd.cli("net-create", "-", input=nat_xml("modes", 71)).returncode == 0
    [directory] = (virtnetd.run_dir / "dnsmasq").iterdir()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [directory, *directory.iterdir()]}
    assert modes[directory.name] == 0o750
    assert grp.getgrgid(directory.stat().st_gid).gr_name in ("dnsmasq", "nogroup", "nobody")
    assert modes["leases"] == 0o600 and modes["lease-event"] == 0o700
    assert modes["dnsmasq.conf"] == modes["dhcp-hosts"] == modes["addn-hosts"] == 0o640
    # nothing for others (dnsmasq writes its pid file 0644, behind the 0750 directory)
    assert not any(mode & 0o007 for name, mode in modes.items() if name != "dnsmasq.pid")
    assert (virtnetd.run_dir / "virtnetd.pid").exists()
    virtnetd.stop()
    assert not (virtnetd.run_dir / "virtnetd.pid").exists()


def test_a_deleted_host_namespace_takes_its_networks_and_its_daemon_with_it(
    lab: Lab, tmp_path: Path
) -> None:
    """``ip netns del`` of the served namespace: its dnsmasqs would keep it alive, unseen
    (no name to reach it by), and the daemon with them. Both go, and say so."""
    host = lab.netns("doomed")
    daemon = Daemon(host.name, tmp_path / "state", run_dir_for_test(), lab).start()
    dnsmasqs: list[int] = []
    try:
        assert daemon.cli("net-create", "-", input=nat_xml("doomed", 91)).returncode == 0
        dnsmasqs = [p for p in host.pids() if Path(f"/proc/{p}/comm").read_text() == "dnsmasq\n"]
        assert dnsmasqs
        subprocess.run(["ip", "netns", "del", host.name], check=True)
        assert daemon.proc is not None and daemon.proc.wait(timeout=20) == 0, daemon.log_text()
        deadline = time.monotonic() + 10
        while any(map(_running, dnsmasqs)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_running, dnsmasqs))
        log = daemon.log_text()
        assert f"network namespace {host.name} was deleted" in log
        assert "network doomed stopped" in log
    finally:
        for pid in dnsmasqs:  # only if the daemon failed to: they are this test's processes
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        daemon.stop()
        shutil.rmtree(daemon.run_dir, ignore_errors=True)


def test_prometheus_scrapes_networks_ports_leases_drops_and_operation_times(
    spare: Daemon, host_ns: Namespace, lab: Lab
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    spare.start("--interval", "1", "--metrics", "127.0.0.1:19472")
    assert spare.cli("net-create", "-", input=nat_xml("metered", 93)).returncode == 0
    guest = lab.netns("metered")
    assert spare.cli("net-port-create", "metered", "--guest-netns", guest.name).returncode == 0
    assert dhcp_lease(guest)
    scrape = (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:19472/metrics').read().decode())"
    )
    text = host_ns.exec(sys.executable, "-c", scrape).stdout  # the served namespace's loopback
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip
    net = (("network", "metered"),)
    assert samples[("virtnet_networks", (("state", "active"),))] == 1
    assert samples[("virtnet_ports", net)] == 1
    assert samples[("virtnet_dhcp_leases", net)] == 1
    assert samples[("virtnet_operation_seconds_count", (("operation", "create_network"),))] == 1
    assert samples[("virtnet_operation_seconds_count", (("operation", "create_port"),))] == 1
    drops = [k for k in samples if k[0] == "virtnet_port_dropped_packets"]
    assert len(drops) == 1 and samples[drops[0]] == 0
    missing = host_ns.exec(sys.executable, "-c", scrape.replace("/metrics", "/other"), check=False)
    assert "404" in missing.stderr
    assert spare.cli("net-destroy", "metered").returncode == 0


def test_a_run_dir_off_a_tmpfs_is_named_at_start(
    spare: Daemon, lab: Lab, host_ns: Namespace, tmp_path: Path
) -> None:
    """A plug makes and removes a journal file in the run dir: on a disk that is slower (on
    ext4 without a journal, a plug grew 1.3 -> 2.9 ms over 1,000 ports), so virtnetd says
    where its run dir is when it is not a tmpfs, and says nothing when it is."""
    from virtnet.host import filesystem_type

    spare.start()
    spare.stop()
    assert filesystem_type(spare.run_dir) == "tmpfs"
    assert "not a tmpfs" not in spare.log.read_text()
    disk = Path(tempfile.mkdtemp(prefix="virtnet-test-", dir="/var/tmp"))
    try:
        if filesystem_type(disk) == "tmpfs":
            pytest.skip("/var/tmp is a tmpfs here: no disk to try")
        daemon = Daemon(host_ns.name, tmp_path / "state2", disk / "run", lab).start()
        daemon.stop()
        line = [x for x in daemon.log.read_text().splitlines() if "not a tmpfs" in x]
        assert line and str(disk / "run") in line[0] and filesystem_type(disk) in line[0]
    finally:
        shutil.rmtree(disk, ignore_errors=True)


def test_the_daemon_keeps_its_firewall_tables_between_networks_and_removes_them_at_exit(
    spare: Daemon, host_ns: Namespace
) -> None:
    """Without a network the tables are inert (every rule matches a set that is empty) and
    making them again cost the next first start ~7 ms (libnftables parses ~100 rules): a
    daemon keeps them while it runs, and removes them when it exits with no network up; a
    process without the daemon removes them with the last network, as before."""

    def tables() -> set[str]:
        listed = host_ns.exec("nft", "list", "tables").stdout
        return {line.split()[1] + " " + line.split()[2] for line in listed.splitlines()}

    virtnet_tables = {"inet virtnet", "bridge virtnet"}
    spare.start()
    assert spare.cli("net-create", "-", input=nat_xml("kept", 41)).returncode == 0
    assert virtnet_tables <= tables()
    assert spare.cli("net-destroy", "kept").returncode == 0
    assert virtnet_tables <= tables()  # kept for the next network
    chains = host_ns.exec("nft", "list", "table", "inet", "virtnet").stdout
    assert "vtd41" not in chains  # nothing of the stopped network's is left in them
    assert spare.cli("net-create", "-", input=nat_xml("again", 42)).returncode == 0
    spare.stop()
    assert virtnet_tables <= tables()  # a network still runs: the tables stay with it
    spare.start()
    assert spare.cli("net-destroy", "again").returncode == 0
    spare.stop()
    assert not virtnet_tables & tables()
    local = {**os.environ, "VIRTNET_DAEMON": "never"}
    for command in (["net-create", "-"], ["net-destroy", "alone"]):
        done = spare.cli(*command, input=nat_xml("alone", 43), env=local)
        assert done.returncode == 0, done.stderr
    assert not virtnet_tables & tables()  # without the daemon: gone with the last network
