"""libvirt domains on virtnet networks (issue 17): Debian's libvirtd with its QEMU driver, in
the test's host namespace, runs the shipped qemu hook (contrib/libvirt/qemu); a real TCG
domain whose metadata puts its ethernet interface on a virtnet network gets a guarded port
with its MAC and portgroup before QEMU opens the tap, takes a lease, pings the gateway, and
its port goes when the domain ends."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtnet.testing import Lab, Namespace
from virtnet.testing.daemon import BIN, Daemon
from virtnet.testing.fixtures import needs_root
from virtnet.testing.libvirt import Libvirtd

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
ROOT = Path(__file__).parents[2]
NET = """<network><name>vmlan</name><forward mode='nat'/><bridge name='vtbr-vml'/>
<ip address='10.88.0.1' prefix='24'><dhcp><range start='10.88.0.100' end='10.88.0.150'/>
</dhcp></ip><portgroup name='web'><bandwidth><inbound average='1000'/></bandwidth></portgroup>
</network>"""


def documented(name: str, mac: str, network: str) -> tuple[str, str]:
    """docs/integrations.md's metadata and interface, for this domain: the example users copy
    is the one that runs here."""
    text = (ROOT / "docs" / "integrations.md").read_text()
    [block] = re.findall(r"```xml\n(.*?)```", text, re.S)
    block = block.replace("vnv-web1", f"vnv-{name}").replace('network="default"',
                          f'network="{network}"').replace("52:54:00:6a:00:01", mac)  # fmt: skip
    metadata = re.search(r"<metadata>.*</metadata>", block, re.S)
    interface = re.search(r"<interface .*</interface>", block, re.S)
    assert metadata and interface, block
    return metadata.group(0), interface.group(0)


def domain(name: str, image: Path, console: Path, mac: str, network: str = "vmlan") -> str:
    metadata, interface = documented(name, mac, network)
    return f"""<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
  {metadata}
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{image / "vmlinuz"}</kernel><initrd>{image / "initrd.gz"}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 target=10.88.0.1</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    {interface}
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
  </devices>
</domain>"""


@pytest.fixture
def libvirtd(virtnetd: Daemon, lab: Lab, host_ns: Namespace, tmp_path: Path) -> Iterator[Libvirtd]:
    hook = (ROOT / "contrib" / "libvirt" / "qemu").read_text()  # the shipped hook, pointed here
    hook = hook.replace("/run/virtnet/virtnetd.sock", str(virtnetd.socket))
    hook = hook.replace("/usr/local/bin/", f"{BIN}/")
    with virtnetd.client() as client:
        client.create_network(NET)
    sandbox = Libvirtd(host_ns, lab, tmp_path / "libvirtd.log", hook).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def ports(daemon: Daemon) -> list[dict[str, object]]:
    with daemon.client() as client:
        return client.list_ports("vmlan")


def test_a_libvirt_domain_gets_its_port_before_qemu_and_loses_it_after(
    libvirtd: Libvirtd, virtnetd: Daemon, guest_image: Path, tmp_path: Path
) -> None:
    console, mac = tmp_path / "console.log", "52:54:00:6a:00:01"
    (tmp_path / "dom.xml").write_text(domain("vt-web1", guest_image, console, mac))
    libvirtd.virsh("create", str(tmp_path / "dom.xml"))
    [port] = ports(virtnetd)  # made by the hook at "prepare", before QEMU opened the tap
    assert (port["mac"], port["portgroup"]) == (mac, "web")
    assert port["owner"]["name"] == "vt-web1"  # type: ignore[index]
    deadline = time.monotonic() + 180
    while "GUEST: ping" not in (console.read_text() if console.exists() else ""):
        assert time.monotonic() < deadline, console.read_text() if console.exists() else ""
        time.sleep(0.2)
    text = console.read_text()
    assert re.search(r"GUEST: lease 10\.88\.0\.\d+/24", text) and "ping 10.88.0.1 ok" in text, text
    while ports(virtnetd):  # the domain ends (it powers off): libvirt's "release" hook
        assert time.monotonic() < deadline, libvirtd.virsh("list", "--all").stdout
        time.sleep(0.2)


def test_a_domain_the_hook_refuses_does_not_start_and_leaves_nothing(
    libvirtd: Libvirtd, virtnetd: Daemon, guest_image: Path, tmp_path: Path
) -> None:
    """The hook's one line reaches the user through virsh; libvirt does not start QEMU; the
    domain's first interface, on a network that exists, does not keep its port."""
    xml = domain("vt-lost", guest_image, tmp_path / "c.log", "52:54:00:6a:00:02", "nowhere")
    first_meta = '<virtnet:interface dev="vnv-ok" network="vmlan"/>'
    first = ("<interface type='ethernet'><mac address='52:54:00:6a:00:03'/>"
             "<target dev='vnv-ok' managed='no'/><model type='virtio'/></interface>")  # fmt: skip
    xml = xml.replace("<virtnet:interface ", first_meta + "<virtnet:interface ", 1)
    xml = xml.replace("<devices>", "<devices>" + first, 1)
    (tmp_path / "dom.xml").write_text(xml)
    done = libvirtd.virsh("create", str(tmp_path / "dom.xml"), check=False)
    assert done.returncode != 0 and "virtnet: network 'nowhere'" in done.stderr, done.stderr
    assert ports(virtnetd) == [] and "vt-lost" not in libvirtd.virsh("list", "--all").stdout
