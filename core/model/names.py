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
IFNAME_MAX = 15  # IFNAMSIZ - 1
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_IFNAME_BAD = re.compile(r"[/:\s]")


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
    """The kernel's rules for an interface name (dev_valid_name)."""
    if not name:
        raise InvalidInput("interface name must not be empty", subject=subject)
    if len(name.encode()) > IFNAME_MAX:
        raise InvalidInput(
            f"interface name {name!r} is longer than {IFNAME_MAX} bytes", subject=subject
        )
    if name in (".", "..") or _IFNAME_BAD.search(name) or not name.isprintable():
        raise InvalidInput(
            f"interface name {name!r} may not be '.', '..' or contain '/', ':' or spaces",
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
    if not _MAC.match(mac):
        raise InvalidInput(f"{value!r} is not a MAC address", subject=subject)
    if int(mac[:2], 16) & 1:
        raise InvalidInput(f"{value!r} is a multicast address", subject=subject)
    return mac


def check_ip(
    value: str, subject: str, version: int | None = None
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an IP address", subject=subject) from None
    if version is not None and addr.version != version:
        raise InvalidInput(f"{value} is not an IPv{version} address", subject=subject)
    return addr


def check_dns_name(value: str, subject: str) -> str:
    """A host or domain name: dot-separated labels of letters, digits, '-' and '_'."""
    labels = value.rstrip(".").split(".")
    if not value or len(value) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise InvalidInput(f"{value!r} is not a valid DNS name", subject=subject)
    return value
