"""QEMU's bridge helper protocol (issue 17): an unprivileged QEMU on a virtnet network.

A real QEMU (TCG) runs as ``nobody`` with ``-netdev bridge,br=NETWORK,helper=
virtnet-bridge-helper``; the helper asks virtnetd's plug socket, which checks the ACL, makes a
guarded tap port with the guest's MAC (read from QEMU's command line) and sends its descriptor;
the guest takes a lease and pings the gateway; the port goes when QEMU exits, or is killed.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtnet.testing import Lab, Namespace
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import needs_root, run_dir_for_test

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
NOBODY = 65534
NET = """<network><name>vms</name><forward mode='nat'/><bridge name='vtbr-vms'/>
<ip address='10.86.0.1' prefix='24'><dhcp><range start='10.86.0.100' end='10.86.0.150'/>
</dhcp></ip></network>"""
HELPER = BIN / "virtnet-bridge-helper"


@pytest.fixture
def plugd(lab: Lab, host_ns: Namespace, tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    """virtnetd with a plug socket in a directory anyone may enter, and an ACL: nobody may
    use network ``vms`` and nothing else."""
    for parent in HELPER.parents:  # the helper and its venv must be reachable by nobody
        if not os.stat(parent).st_mode & 0o001:
            pytest.fail(f"{parent} is not searchable by other users: nobody cannot run {HELPER}")
    shared = Path(tempfile.mkdtemp(prefix="virtnet-plug-", dir="/run"))
    run = run_dir_for_test()
    daemon = Daemon(host_ns.name, tmp_path / "state", run, lab)
    try:  # from here on, whatever fails: the directories go, the daemon stops
        shared.chmod(0o755)
        acl = shared / "bridge.conf"
        acl.write_text("allow vms nobody\ndeny all @nogroup-not-used\n")
        sock = shared / "plug.sock"
        daemon.start("--interval", "0.5", "--plug-acl", str(acl), "--plug-socket", str(sock))
        with daemon.client() as client:
            client.call("create_network", xml=NET)
        yield daemon, sock
        with daemon.client() as client:
            client.call("destroy_network", name="vms")
    finally:
        daemon.stop()
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)


def qemu(lab: Lab, host: Namespace, image: Path, sock: Path, *netdev: str) -> subprocess.Popen[str]:
    """QEMU as nobody (no supplementary groups) in the host's namespace."""
    cmd = [
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.gz"),
        "-append", "console=ttyS0 quiet panic=-1 target=10.86.0.1", *netdev,
    ]  # fmt: skip
    env = {**os.environ, "VIRTNET_PLUG_SOCKET": str(sock), "HOME": "/"}
    return lab.track(host.popen(*cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env))


def documented_nic() -> list[str]:
    """The ``-netdev``/``-device`` pair of docs/integrations.md's QEMU example, on network
    ``vms`` and this install's helper: the example users copy is the one that runs here."""
    text = (Path(__file__).parents[2] / "docs" / "integrations.md").read_text()
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "qemu-system" in b]
    words = shlex.split(block.replace("\\\n", " "))
    nic = []
    for option, value in itertools.pairwise(words):
        if option in ("-netdev", "-device"):
            value = value.replace("br=default", "br=vms")
            nic += [option, re.sub(r"helper=\S+?(?=,|$)", f"helper={HELPER}", value)]
    assert len(nic) == 4, block
    return nic


def ports(daemon: Daemon) -> list[dict[str, object]]:
    with daemon.client() as client:
        found: list[dict[str, object]] = client.call("list_ports", network="vms")
        return found


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_an_unprivileged_qemu_gets_a_guarded_port_that_ends_with_it(
    plugd: tuple[Daemon, Path], lab: Lab, host_ns: Namespace, guest_image: Path
) -> None:
    daemon, sock = plugd
    mac = "52:54:00:12:34:01"  # the documented example's
    vm = qemu(lab, host_ns, guest_image, sock, *documented_nic())
    assert wait_for(lambda: len(ports(daemon)) == 1), daemon.log_text()
    [port] = ports(daemon)
    attachment = port["attachment"]
    assert isinstance(attachment, dict)
    assert (port["mac"], attachment["owner_uid"], attachment["release_on_close"]) == (
        mac, NOBODY, True,
    )  # fmt: skip
    assert attachment.get("spoof_check") is not False  # the guard is on: nobody is not trusted
    listed = daemon.cli("net-port-list", "vms").stdout
    assert f"uid {NOBODY}" in listed and mac in listed, listed  # whose it is, in the list
    console, _ = vm.communicate(timeout=180)
    lease = re.search(r"GUEST: lease (10\.86\.0\.\d+)/24", console)
    assert lease, console[-3000:]
    assert "GUEST: ping 10.86.0.1 ok" in console, console[-3000:]
    assert wait_for(lambda: ports(daemon) == []), daemon.log_text()  # QEMU exited: port gone
    assert attachment["ifname"] not in host_ns.links()


def test_qemu_killed_refused_or_vague_leaves_no_port(
    plugd: tuple[Daemon, Path], lab: Lab, host_ns: Namespace, guest_image: Path
) -> None:
    daemon, sock = plugd
    # a helper string with arguments: QEMU runs it through sh -c, and the MAC is still found
    vm = qemu(lab, host_ns, guest_image, Path("/nonexistent"),
              "-netdev", f"bridge,id=n0,br=vms,helper={HELPER} --socket={sock}",
              "-device", "e1000,netdev=n0,mac=52:54:00:86:00:02")  # fmt: skip
    assert wait_for(lambda: len(ports(daemon)) == 1), daemon.log_text()
    assert ports(daemon)[0]["mac"] == "52:54:00:86:00:02"
    vm.kill()  # kill -9: nothing of QEMU's cleans up; the tap's last holder is gone
    vm.communicate(timeout=30)
    assert wait_for(lambda: ports(daemon) == []), daemon.log_text()

    refused = qemu(lab, host_ns, guest_image, sock,
                   "-netdev", f"bridge,id=n0,br=elsewhere,helper={HELPER}",
                   "-device", "e1000,netdev=n0,mac=52:54:00:86:00:03")  # fmt: skip
    said, _ = refused.communicate(timeout=60)
    assert refused.returncode != 0
    assert "user nobody may not use network 'elsewhere'" in said, said

    vague = qemu(lab, host_ns, guest_image, sock,
                 "-netdev", f"bridge,id=n0,br=vms,helper={HELPER}",
                 "-device", "e1000,netdev=n0")  # fmt: skip
    said, _ = vague.communicate(timeout=60)
    assert vague.returncode != 0 and "which MAC has the NIC on vms?" in said, said
    assert ports(daemon) == []


def test_the_plug_socket_answers_hostile_requests_with_one_line_and_makes_nothing(
    plugd: tuple[Daemon, Path],
) -> None:
    """Anyone may connect (0666): garbage, unknown parameters, a multicast MAC, a flood of
    bytes and a silent client each get an error or are dropped; no port is made."""
    import json
    import socket

    daemon, sock = plugd
    assert sock.stat().st_mode & 0o777 == 0o666

    def ask(raw: bytes) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            s.sendall(raw)
            answer: dict[str, object] = json.loads(s.makefile("rb").readline())
            return answer

    def request(**params: object) -> bytes:
        body = {"jsonrpc": "2.0", "id": 7, "method": "plug_tap", "params": params}
        return json.dumps(body).encode() + b"\n"

    for raw, said in (
        (b"not json\n", "request: not JSON"),
        (b'{"method": "create_network"}\n', "the plug socket answers plug_tap only"),
        (request(network="vms", vnet_hdr="yes"), "vnet_hdr: must be true or false"),
        (request(network="vms", owner_uid=0), "unknown parameter 'owner_uid'"),
        (request(network="vms", mac="01:00:5e:00:00:01"), "is a multicast address"),
        (request(network=""), "a network name is required"),
        (b"x" * 10000, "a request is at most 4096 bytes"),
    ):
        answer = ask(raw)
        error = answer["error"]
        assert isinstance(error, dict) and said in str(error["message"]), (raw[:40], answer)
    assert ports(daemon) == []
