"""Raw frames a hostile guest sends: forged DHCP, router advertisements, neighbour discovery.

Built byte by byte (no packet library) and sent through an ``AF_PACKET`` socket from inside a
guest namespace (:func:`send`), so anti-spoofing is tested with exactly what an attacker with
raw sockets can put on the wire. Shipped in ``virtnet.testing`` for backend vendors' tests.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

from virtnet.testing.netns import Namespace

ETH_IP, ETH_IP6 = 0x0800, 0x86DD


def link_local(mac: str) -> str:
    """The EUI-64 link-local address of ``mac``."""
    from virtnet.services.guard_rules import eui64_link_local

    return eui64_link_local(mac)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    pseudo += struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, s, d)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 255) -> bytes:
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    if next_header == 58:  # ICMPv6: fill in the checksum
        pseudo = s + d + struct.pack("!IxxxB", len(payload), 58)
        payload = payload[:2] + struct.pack("!H", _checksum(pseudo + payload)) + payload[4:]
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + s + d + payload


def dhcp_request(chaddr: str, message_type: int, ciaddr: str = "0.0.0.0",
                 server: str | None = None, requested: str | None = None,
                 client_id: bytes | None = None, xid: int = 0x5EC0DE,
                 giaddr: str = "0.0.0.0") -> bytes:  # fmt: skip
    """A BOOTREQUEST (1 discover, 3 request, 7 release) for ``chaddr``; ``giaddr``: as
    relayed by a DHCP relay agent with that address."""
    ci, gi = ipaddress.IPv4Address(ciaddr).packed, ipaddress.IPv4Address(giaddr).packed
    body = struct.pack("!BBBBIHH4s4s4s4s", 1, 1, 6, 0, xid, 0, 0x8000, ci, bytes(4), bytes(4), gi)
    body += mac_bytes(chaddr).ljust(16, b"\0") + bytes(192) + b"\x63\x82\x53\x63"
    body += bytes([53, 1, message_type])
    if server:
        body += bytes([54, 4]) + ipaddress.IPv4Address(server).packed
    if requested:
        body += bytes([50, 4]) + ipaddress.IPv4Address(requested).packed
    if client_id:
        body += bytes([61, len(client_id)]) + client_id
    return body + b"\xff"


def dhcp_offer(yiaddr: str, server: str, chaddr: str, router: str) -> bytes:
    """A rogue server's DHCPOFFER naming itself the router."""
    body = struct.pack("!BBBBIHH4s4s4s4s", 2, 1, 6, 0, 0x5EC0DE, 0, 0x8000, bytes(4),
                       ipaddress.IPv4Address(yiaddr).packed, ipaddress.IPv4Address(server).packed,
                       bytes(4))  # fmt: skip
    body += mac_bytes(chaddr).ljust(16, b"\0") + bytes(192) + b"\x63\x82\x53\x63"
    body += bytes([53, 1, 2, 54, 4]) + ipaddress.IPv4Address(server).packed
    body += bytes([1, 4, 255, 255, 255, 0, 3, 4]) + ipaddress.IPv4Address(router).packed
    return body + bytes([51, 4, 0, 0, 14, 16, 255])


def router_advert(prefix: str, mac: str, lifetime: int = 1800) -> bytes:
    """An RA announcing ``prefix`` (a /64) with the sender as default router."""
    net = ipaddress.IPv6Network(prefix)
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, lifetime, 0, 0)
    ra += bytes([1, 1]) + mac_bytes(mac)  # source link-layer address
    ra += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + net.network_address.packed
    return ra


def neighbour_advert(target: str, mac: str, override: bool = True) -> bytes:
    """An unsolicited NA claiming ``target`` for ``mac`` (override: replace cached entries)."""
    flags = 0x20000000 if override else 0
    return (
        struct.pack("!BBHI", 136, 0, 0, flags)
        + ipaddress.IPv6Address(target).packed
        + bytes([2, 1])
        + mac_bytes(mac)
    )


def neighbour_solicit(target: str, mac: str) -> bytes:
    return (
        struct.pack("!BBHI", 135, 0, 0, 0)
        + ipaddress.IPv6Address(target).packed
        + bytes([1, 1])
        + mac_bytes(mac)
    )


def send(ns: Namespace, ifname: str, frames: list[bytes], repeat: int = 1) -> None:
    """Send raw ``frames`` out of ``ifname`` inside ``ns`` (a child process in the namespace)."""
    hexed = [f.hex() for f in frames]
    ns.exec(sys.executable, "-m", "virtnet.testing.frames", ifname, str(repeat), *hexed)


def _main(argv: list[str]) -> None:
    ifname, repeat, *frames = argv
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        for _ in range(int(repeat)):
            for frame in frames:
                sock.send(bytes.fromhex(frame))


if __name__ == "__main__":
    _main(sys.argv[1:])
