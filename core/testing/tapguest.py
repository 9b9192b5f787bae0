"""A stand-in for a VM on a tap or macvtap port: a namespace whose ``eth0`` is wired to it.

A VM monitor (QEMU) opens the port's tap by name, or a macvtap's character device, and moves
frames between it and the guest's NIC, each behind a virtio-net header. This does the same
with a process instead of a VM: it opens the port's device in the host's namespace, makes a
tap called ``eth0`` with the guest's MAC inside the guest's namespace, and relays frames both
ways. So tests put a tap port through DHCP, ping and TCP in a second, where booting a guest
takes ten.

    attach(lab, host, "vnet1a2b3c", guest, "52:54:00:12:34:56")   # then dhcp_lease(guest)

Run as ``python -m virtnet.testing.tapguest DEVICE GUEST_NETNS MAC`` inside the host's
namespace; it prints ``ready`` once ``eth0`` is up, and relays until killed.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import struct
import subprocess
import sys

from virtnet.testing.netns import Lab, Namespace

TUNSETIFF, TUNSETOFFLOAD = 0x400454CA, 0x400454D0
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
CLONE_NEWNET = 0x40000000
VNET_HDR = 10  # sizeof(struct virtio_net_hdr): what taps and macvtaps use by default


def attach(lab: Lab, host: Namespace, device: str, guest: Namespace, mac: str) -> None:
    """Wire ``guest``'s new ``eth0`` to the tap named ``device`` (or the macvtap character
    device at that path) in ``host``; the relay is the lab's, stopped with it."""
    args = [sys.executable, "-m", "virtnet.testing.tapguest", device, guest.name, mac]
    command = ["ip", "netns", "exec", host.name, *args]
    proc = lab.track(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"the tap relay for {device} did not start ({proc.wait(5)})")


def _tap(name: str, flags: int) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    return fd


def _enter(netns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
    finally:
        os.close(fd)


def relay(device: str, guest_netns: str, mac: str) -> None:
    if device.startswith("/"):  # a macvtap's character device: virtio headers by default
        port = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    else:  # the persistent tap virtnet made, with the flags QEMU asks for
        port = _tap(device, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    # no offloads, as a VM that negotiated none: the kernel hands over whole frames with
    # their checksums done (a macvtap offers checksum and segmentation offload by default,
    # and a partial checksum relayed as it is would be dropped by the guest's stack)
    fcntl.ioctl(port, TUNSETOFFLOAD, 0)
    _enter(guest_netns)  # single-threaded: the whole process moves
    nic = _tap("eth0", IFF_TAP | IFF_NO_PI)
    subprocess.run(["ip", "link", "set", "eth0", "address", mac, "up"], check=True)
    print("ready", flush=True)
    header = bytes(VNET_HDR)
    while True:
        readable, _, _ = select.select([port, nic], [], [])
        if port in readable:
            frame = os.read(port, 65536)[VNET_HDR:]
            if frame:
                os.write(nic, frame)
        if nic in readable:
            os.write(port, header + os.read(nic, 65536))


if __name__ == "__main__":
    relay(sys.argv[1], sys.argv[2], sys.argv[3])
