"""virtnet-cni (issue 17): the CNI 1.1 plugin, driven as a runtime drives it (each command a
process with the spec's environment and the configuration on stdin), then by podman."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from virtnet.testing import Lab, can_ping
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import needs_root
from virtnet.testing.podman import Podman

pytestmark = [needs_root, pytest.mark.root]
NET = """<network><name>pods</name><forward mode='nat'/><bridge name='vtbr-pods'/>
<ip address='10.87.0.1' prefix='24'><dhcp><range start='10.87.0.10' end='10.87.0.20'/>
</dhcp></ip></network>"""


def cni(command: str, config: dict[str, Any], container: str = "", netns: str = "",
        ifname: str = "eth0", raw: str | None = None, args: str = "") -> tuple[int, Any]:  # fmt: skip
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": str(BIN),
           "CNI_ARGS": args}  # fmt: skip
    done = subprocess.run([str(BIN / "virtnet-cni")], input=raw or json.dumps(config), env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.stderr == "" or done.returncode, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture
def pods(virtnetd: Daemon) -> dict[str, Any]:
    with virtnetd.client() as client:
        client.create_network(NET)
    return {"cniVersion": "1.1.0", "name": "pods", "type": "virtnet-cni",
            "socket": str(virtnetd.socket)}  # fmt: skip


def reservations(daemon: Daemon) -> str:
    with daemon.client() as client:
        return client.dumpxml("pods")


def test_add_check_del_and_gc_as_the_spec_says(
    pods: dict[str, Any], virtnetd: Daemon, lab: Lab
) -> None:
    c1, c2 = lab.netns("c1"), lab.netns("c2")
    path = f"/run/netns/{c1.name}"
    assert cni("VERSION", pods)[1]["supportedVersions"][-1] == "1.1.0"
    assert cni("STATUS", pods) == (0, None)
    code, result = cni("ADD", pods, "c1", path)
    assert code == 0, result
    address = result["ips"][0]["address"]
    assert address.startswith("10.87.0.") and address.endswith("/24")
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.87.0.1"}]
    assert result["dns"] == {"nameservers": ["10.87.0.1"]}
    assert result["interfaces"][1]["sandbox"] == path
    assert address in c1.ip("-o", "addr", "show", "dev", "eth0").stdout
    assert can_ping(c1, "10.87.0.1")
    mac = result["interfaces"][1]["mac"]
    assert f"mac='{mac}' ip='{address[:-3]}'" in reservations(virtnetd)  # dnsmasq keeps it
    assert cni("ADD", pods, "c1", path) == (0, result)  # again: the same port, not another
    checked = {**pods, "prevResult": result}
    assert cni("CHECK", checked, "c1", path) == (0, None)

    # the guard: the container takes another address; it is not its own, so nothing passes
    c1.ip("addr", "flush", "dev", "eth0")
    c1.ip("addr", "add", "10.87.0.99/24", "dev", "eth0")
    assert not can_ping(c1, "10.87.0.1")
    code, error = cni("CHECK", checked, "c1", path)
    assert (code, error["code"]) == (1, 3) and address[:-3] in error["msg"]

    previous = {"cniVersion": "1.1.0", "interfaces": [{"name": "lo0"}],
                "ips": [{"address": "192.0.2.5/32", "interface": 0}],
                "dns": {"nameservers": ["192.0.2.53"]}}  # fmt: skip
    code, chained = cni("ADD", {**pods, "prevResult": previous}, "c2", f"/run/netns/{c2.name}")
    assert code == 0, chained  # after another plugin: its result first, then ours
    assert [i["name"] for i in chained["interfaces"]][::2] == ["lo0", "eth0"]
    assert [ip["interface"] for ip in chained["ips"]] == [0, 2]
    assert chained["dns"]["nameservers"] == ["192.0.2.53", "10.87.0.1"]
    with virtnetd.client() as client:  # what an ADD killed between its two steps leaves
        client.call("reserve_address", network="pods", mac="0a:58:00:00:00:99")
    gc = {**pods, "cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]}
    assert cni("GC", gc) == (0, None)  # c1 is not valid any more: its port and address go
    with virtnetd.client() as client:
        [left] = client.list_ports("pods")
    assert left["owner"]["name"] == "cni:pods:c2:eth0"
    assert "cni:pods:c2:eth0" in virtnetd.cli("net-port-list", "pods").stdout  # Owner column
    assert mac not in reservations(virtnetd) and "eth0" not in c1.links()
    assert "0a:58:00:00:00:99" not in reservations(virtnetd)
    assert cni("DEL", pods, "c1", path) == (0, None)  # gone already: DEL still succeeds
    assert cni("DEL", pods, "c2", "") == (0, None)  # the namespace is not needed
    with virtnetd.client() as client:
        assert client.list_ports("pods") == []
        client.destroy_network("pods")
    assert cni("DEL", pods, "c2", "") == (0, None)  # nor the network
    code, error = cni("STATUS", pods)
    assert (code, error["code"]) == (1, 50) and "not active" in error["msg"]


def test_bad_input_gets_the_specs_error_codes(pods: dict[str, Any], lab: Lab) -> None:
    ns = lab.netns("c")
    for args, code, said in (
        (("ADD", pods, "c", f"/run/netns/{ns.name}", "eth0", "{not json"), 6, "not JSON"),
        (("FROB", pods), 4, "CNI_COMMAND='FROB'"),
        (("ADD", {**pods, "cniVersion": "9.9.9"}, "c", "/run/netns/x"), 1, "not supported"),
        (("ADD", pods, "c", "/proc/1/ns/net"), 4, "mounted in /run/netns"),
        (("ADD", pods, "", f"/run/netns/{ns.name}"), 4, "CNI_CONTAINERID is not set"),
        (("ADD", {**pods, "network": "nope"}, "c", f"/run/netns/{ns.name}"), 11, "nope"),
    ):
        status, error = cni(*args)  # type: ignore[arg-type]
        assert status == 1 and error["code"] == code and said in error["msg"], (args[0], error)
    assert "eth0" not in ns.links()


@pytest.fixture
def podman(pods: dict[str, Any]) -> Iterator[Podman]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing (Debian: podman)")
    engine = Podman(BIN)
    try:  # from here on, whatever fails: its directory goes
        text = (Path(__file__).parents[2] / "docs" / "integrations.md").read_text()
        [block] = re.findall(r"```json\n(.*?)```", text, re.S)  # the documented conflist
        conflist = json.loads(block)
        conflist["plugins"][0]["socket"] = pods["socket"]  # this test's virtnetd
        engine.network(conflist)
        engine.import_busybox("localhost/vtbusybox")
        yield engine
    finally:
        engine.cleanup()


def test_podman_runs_a_container_on_a_virtnet_network(podman: Podman, virtnetd: Daemon) -> None:
    """A container from a locally built busybox image (no registry) gets an address from the
    network, reaches its gateway and resolves the gateway's name through its DNS; when it
    exits, podman's DEL removes the port and the address."""
    done = podman("run", "--rm", "--network", "pods", "--mac-address", "52:54:00:87:00:43",
                  "--ip", "10.87.0.77",
                  "localhost/vtbusybox", "/bin/sh", "-c",
                  "ip -4 -o addr show eth0; ip link show eth0; cat /etc/resolv.conf; "
                  "ping -c 1 -W 3 10.87.0.1 && echo PING-OK")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inet 10.87.0.77/24" in done.stdout, done.stdout  # the address podman asked for
    assert "nameserver 10.87.0.1" in done.stdout and "PING-OK" in done.stdout, done.stdout
    assert "link/ether 52:54:00:87:00:43" in done.stdout, done.stdout  # the MAC podman asked for
    with virtnetd.client() as client:
        assert client.list_ports("pods") == []  # --rm: the container is gone, and its port
        assert "0a:58:" not in client.dumpxml("pods")  # and its reservation


def test_containers_added_at_once_get_distinct_addresses(
    pods: dict[str, Any], virtnetd: Daemon, lab: Lab
) -> None:
    """A runtime starting many containers at once: every ADD races for an address; the
    daemon's lock makes picking and reserving one step, so no two share one."""
    from concurrent.futures import ThreadPoolExecutor

    spaces = [lab.netns(f"p{i}") for i in range(6)]
    with ThreadPoolExecutor(len(spaces)) as pool:
        results = list(pool.map(
            lambda ns: cni("ADD", pods, ns.name, f"/run/netns/{ns.name}"), spaces))  # fmt: skip
    assert all(code == 0 for code, _ in results), results
    addresses = [result["ips"][0]["address"] for _, result in results]
    assert len(set(addresses)) == len(spaces), addresses
    assert all(can_ping(ns, "10.87.0.1") for ns in spaces)
    for ns in spaces:
        assert cni("DEL", pods, ns.name, f"/run/netns/{ns.name}") == (0, None)
    with virtnetd.client() as client:
        assert client.list_ports("pods") == [] and "0a:58:" not in client.dumpxml("pods")


def test_hostile_names_from_the_runtime_are_refused_before_anything_is_made(
    pods: dict[str, Any], virtnetd: Daemon, lab: Lab
) -> None:
    """CNI_IFNAME and CNI_CONTAINERID come from whoever runs the plugin: an interface name
    that is not one, or a container id with markup, is bad configuration (code 7) or is
    carried as plain text; nothing is left behind."""
    ns = lab.netns("h")
    path = f"/run/netns/{ns.name}"
    for ifname in ("eth0;reboot", "x" * 16, "../eth0"):
        code, error = cni("ADD", pods, "c", path, ifname=ifname)
        assert (code, error["code"]) == (1, 7), (ifname, error)
    code, result = cni("ADD", pods, "<c>&'\"", path)
    assert code == 0, result
    with virtnetd.client() as client:
        [port] = client.list_ports("pods")
        assert port["owner"]["name"] == "cni:pods:<c>&'\":eth0"
    assert cni("DEL", pods, "<c>&'\"", path) == (0, None)
    with virtnetd.client() as client:
        assert client.list_ports("pods") == [] and "0a:58:" not in client.dumpxml("pods")


def test_a_container_asks_for_its_address_and_gets_it_or_a_reason(
    pods: dict[str, Any], lab: Lab
) -> None:
    """``IP=`` (CNI_ARGS; podman's --ip comes as the ips capability): anywhere in the subnet
    and free, or refused; one address is never given twice."""
    a, b = lab.netns("a"), lab.netns("b")
    code, result = cni("ADD", pods, "a", f"/run/netns/{a.name}", args="IP=10.87.0.50")
    assert code == 0 and result["ips"][0]["address"] == "10.87.0.50/24", result
    code, error = cni("ADD", pods, "b", f"/run/netns/{b.name}", args="IP=10.87.0.50")
    assert (code, error["code"]) == (1, 11) and "in use" in error["msg"], error
    code, error = cni("ADD", pods, "b", f"/run/netns/{b.name}", args="IP=10.99.0.5")
    assert (code, error["code"]) == (1, 7) and "not a host address" in error["msg"], error
    assert "eth0" not in b.links()
    assert cni("DEL", pods, "a", f"/run/netns/{a.name}") == (0, None)


def test_a_container_cannot_take_anothers_mac_or_another_configurations_ports(
    pods: dict[str, Any], virtnetd: Daemon, lab: Lab
) -> None:
    """Asking for a MAC another container holds fails and leaves that container's address
    and traffic alone; GC of one configuration never touches ports of another configuration
    whose name starts the same way."""
    a, b, c = lab.netns("a"), lab.netns("b"), lab.netns("c")
    code, result = cni("ADD", pods, "a", f"/run/netns/{a.name}")
    assert code == 0, result
    mac, address = result["interfaces"][1]["mac"], result["ips"][0]["address"][:-3]
    code, error = cni("ADD", pods, "b", f"/run/netns/{b.name}", args=f"MAC={mac}")
    assert code == 1, error
    assert f"mac='{mac}' ip='{address}'" in reservations(virtnetd)  # a's, still
    assert can_ping(a, "10.87.0.1") and "eth0" not in b.links()
    other = {**pods, "name": "podsx", "network": "pods"}
    assert cni("ADD", other, "c", f"/run/netns/{c.name}")[0] == 0
    gc = {**pods, "cni.dev/valid-attachments": []}
    assert cni("GC", gc) == (0, None)  # every "pods" port goes; "podsx"'s is not its own
    with virtnetd.client() as client:
        assert [p["owner"]["name"] for p in client.list_ports("pods")] == ["cni:podsx:c:eth0"]
    assert cni("DEL", other, "c", f"/run/netns/{c.name}") == (0, None)
