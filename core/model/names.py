"""Checks for the names and addresses that end up in the kernel, in files or in dnsmasq.

Each check raises :class:`InvalidInput` naming the field and the reason, or returns the
normalised value. They are shared by the network and port validators and by the CLI.
"""

from __future__ import annotations

import ipaddress
import re
import uuid as uuidlib

from virtnet.errors import InvalidInput

NAME_MAX = 64
_THIS_NET4 = ipaddress.ip_network("0.0.0.0/8")
IFNAME_MAX = 15  # IFNAMSIZ - 1
# always used with fullmatch: ``$`` alone would accept a trailing newline
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
_IFNAME = re.compile(r"[A-Za-z0-9_.+-]+")


def check_network_name(name: str, subject: str = "network/name") -> str:
    """libvirt's object-name rules, plus a length limit (names become file names)."""
    if not name:
        raise InvalidInput("must not be empty", subject=subject)
    if "/" in name:
        raise InvalidInput(f"{name!r} must not contain '/'", subject=subject)
    if name.startswith("."):
        raise InvalidInput(f"{name!r} must not start with '.'", subject=subject)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInput(f"{name!r} must not contain control characters", subject=subject)
    if len(name.encode()) > NAME_MAX:
        raise InvalidInput(f"is longer than {NAME_MAX} bytes", subject=subject)
    return name


def check_ifname(name: str, subject: str) -> str:
    """An interface name: the kernel's rules (dev_valid_name), narrowed to letters, digits and
    ``_ . + -``: names reach nftables rules and dnsmasq's ``interface=`` (where ',' would
    add another interface), so nothing in them may carry meaning there."""
    if not name:
        raise InvalidInput("interface name must not be empty", subject=subject)
    if len(name.encode()) > IFNAME_MAX:
        raise InvalidInput(
            f"interface name {name!r} is longer than {IFNAME_MAX} bytes", subject=subject
        )
    if name in (".", "..") or not _IFNAME.fullmatch(name):
        raise InvalidInput(
            f"interface name {name!r} may hold only letters, digits and '_.+-' "
            "(and not be '.' or '..')",
            subject=subject,
        )
    return name


def check_uuid(value: str, subject: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise InvalidInput(f"{value!r} is not a UUID", subject=subject) from None


def check_mac(value: str, subject: str) -> str:
    """A unicast MAC address, returned in lower case."""
    mac = value.lower()
    if not _MAC.fullmatch(mac):
        raise InvalidInput(f"{value!r} is not a MAC address", subject=subject)
    if int(mac[:2], 16) & 1:
        raise InvalidInput(f"{value!r} is a multicast address", subject=subject)
    if mac == "00:00:00:00:00:00":
        raise InvalidInput(f"{value!r} is the all-zero address", subject=subject)
    return mac


def check_ip(
    value: str, subject: str, version: int | None = None
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address without an IPv6 scope id (``fe80::1%eth0``): a scope id is free text
    to Python's parser, and would reach dnsmasq's files as it was written."""
    if "%" in value:
        raise InvalidInput(f"{value!r}: a scope id ('%') is not allowed here", subject=subject)
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an IP address", subject=subject) from None
    if version is not None and addr.version != version:
        raise InvalidInput(f"{value} is not an IPv{version} address", subject=subject)
    return addr


def unusable_reason(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``addr`` cannot be a host's own unicast address, or None when it can."""
    if addr.is_unspecified:
        return "is the unspecified address"
    if addr.is_multicast:
        return "is a multicast address"
    if addr.is_loopback:
        return "is a loopback address"
    if addr.version == 4 and (addr in _THIS_NET4 or addr.is_reserved):
        return "is a reserved address (0.0.0.0/8, 240.0.0.0/4, 255.255.255.255)"
    return None


def check_host_address(value: str, subject: str, version: int | None = None) -> str:
    """A unicast address a host may use, in its canonical text form."""
    addr = check_ip(value, subject, version)
    reason = unusable_reason(addr)
    if reason:
        raise InvalidInput(f"{value} {reason}", subject=subject)
    return str(addr)


def check_dns_name(value: str, subject: str) -> str:
    """A host or domain name: dot-separated labels of letters, digits, '-' and '_'."""
    labels = value.rstrip(".").split(".")
    if not value or len(value) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(f"{value!r} is not a valid DNS name", subject=subject)
    return value
