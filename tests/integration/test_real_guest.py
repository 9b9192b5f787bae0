"""A real VM (QEMU, software emulation) on a tap port: DHCP from virtnet's dnsmasq, through
the anti-spoofing guard (its lease is learnt by the lease script), and a ping to the gateway.

The guest is built once per session by tests/guest/build-guest.sh (Debian's cloud kernel and
a busybox initramfs); a boot takes about 10 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from virtnet.api import Virtnet
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.testing import Lab
from virtnet.testing.fixtures import needs_root, run_dir_for_test
from virtnet.testing.world import World

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]


def boot(world: World, image: Path, tap: str, mac: str, target: str) -> str:
    """Boot the guest on ``tap`` inside the host namespace; returns its console output."""
    cmd = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.gz"),
        "-append", f"console=ttyS0 quiet panic=-1 target={target}",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
    ]  # fmt: skip
    proc = world.lab.track(world.host.popen(*cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out


def test_vm_on_a_tap_gets_a_lease_and_pings_the_gateway(world: World, guest_image: Path) -> None:
    world.vn.create_network(
        "<network><name>vm</name><forward mode='nat'/><bridge name='vtbr-vm' stp='off'/>"
        "<ip address='10.81.0.1' prefix='24'><dhcp><range start='10.81.0.100' end='10.81.0.150'/>"
        "</dhcp></ip></network>"
    )
    port = world.vn.create_port(
        "vm", NetworkPort(network="vm", attachment=Attachment(AttachmentKind.TAP, "vtvm0"))
    )
    assert port.mac
    console = boot(world, guest_image, "vtvm0", port.mac, "10.81.0.1")
    lease = re.search(r"GUEST: lease (10\.81\.0\.\d+)/24", console)
    assert lease, console[-3000:]
    assert "GUEST: ping 10.81.0.1 ok" in console, console[-3000:]
    assert [entry.ip for entry in world.vn.dhcp_leases("vm")] == [lease.group(1)]


def test_vm_on_a_macvtap_takes_a_lease_from_the_lan(lab: Lab, guest_image: Path) -> None:
    """A direct network: the VM's DHCP answer comes from a server on the "physical" LAN."""
    host, wire = lab.netns("host"), lab.netns("lan")
    lab.cable(host, "eth1", wire, "eth0")
    lab.address(wire, "eth0", "192.0.2.1/24")
    handle, leases = tempfile.mkstemp(prefix="vt-lan-leases-")
    os.close(handle)
    lab.track(
        wire.popen(
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--bind-interfaces",
            "--interface=eth0",
            "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0",
            "--no-ping",
            f"--dhcp-leasefile={leases}",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    run = run_dir_for_test()
    try:
        with Virtnet(run / "state", run / "run", netns=host.name) as vn:
            vn.create_network(
                "<network><name>d</name><forward mode='bridge' dev='eth1'/></network>"
            )
            port = vn.create_port(
                "d", NetworkPort(network="d", attachment=Attachment(AttachmentKind.MACVTAP))
            )
            assert port.attachment.device and port.mac
            fd = os.open(port.attachment.device, os.O_RDWR)
            try:
                cmd = [
                    "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
                    "-kernel", str(guest_image / "vmlinuz"), "-initrd", str(guest_image / "initrd.gz"),
                    "-append", "console=ttyS0 quiet panic=-1 target=192.0.2.1",
                    "-netdev", f"tap,id=n0,fd={fd}",
                    "-device", f"virtio-net-pci,netdev=n0,mac={port.mac}",
                ]  # fmt: skip
                proc = lab.track(
                    subprocess.Popen(  # type: ignore[arg-type]
                        cmd,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        pass_fds=(fd,),
                    )
                )
                console, _ = proc.communicate(timeout=180)
            finally:
                os.close(fd)
            vn.destroy_network("d")
        assert re.search(r"GUEST: lease 192\.0\.2\.1\d\d/24", console), console[-3000:]
        assert "GUEST: ping 192.0.2.1 ok" in console, console[-3000:]
    finally:
        shutil.rmtree(run, ignore_errors=True)
        os.unlink(leases)
