"""The network model: libvirt's network XML as typed Python objects.

Each class mirrors one element of libvirt's ``<network>`` (see docs/xml-reference.md) and uses
libvirt's names in snake_case. Tri-state XML attributes (``yes``/``no``/absent) are
``bool | None`` so that formatting writes back exactly what was given. The model is pure data:
parsing lives in :mod:`virtnet.model.xml_parse`, formatting in :mod:`virtnet.model.xml_format`,
checks in :mod:`virtnet.model.validate`.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

#: libvirt's namespace for raw dnsmasq options (``<dnsmasq:options>``)
DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"


class ForwardMode(StrEnum):
    """libvirt's ``<forward mode=...>``; ``ISOLATED`` stands for "no ``<forward>`` element"."""

    ISOLATED = "isolated"
    NAT = "nat"
    ROUTE = "route"
    OPEN = "open"
    BRIDGE = "bridge"
    PRIVATE = "private"
    VEPA = "vepa"
    PASSTHROUGH = "passthrough"
    HOSTDEV = "hostdev"

    @property
    def has_own_bridge(self) -> bool:
        """True for the modes where the host owns a bridge with an address (libvirt's rule)."""
        return self in (ForwardMode.ISOLATED, ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.OPEN)

    @property
    def is_direct(self) -> bool:
        """True for the macvtap-style modes that attach guests to a physical device."""
        return self in (ForwardMode.PRIVATE, ForwardMode.VEPA, ForwardMode.PASSTHROUGH)


@dataclass
class Bridge:
    name: str | None = None
    stp: bool | None = None
    delay: int | None = None
    mac_table_manager: str | None = None  # "kernel" | "libvirt"
    zone: str | None = None  # the firewalld zone the bridge joins


@dataclass
class Domain:
    name: str
    local_only: bool | None = None
    #: libvirt registers the domain and the network's DNS server with systemd-resolved;
    #: virtnet keeps the attribute and refuses ``yes`` at start (see recipes.l3_steps)
    register: bool | None = None


@dataclass
class NatRange:
    """``<nat>``: the public address range and port range masquerade may use."""

    ipv6: bool | None = None
    address_start: str | None = None
    address_end: str | None = None
    port_start: int | None = None
    port_end: int | None = None


@dataclass(frozen=True)
class PciAddress:
    """A PCI function (``<address type='pci' domain= bus= slot= function=/>``)."""

    domain: str
    bus: str
    slot: str
    function: str


@dataclass
class Forward:
    mode: ForwardMode = ForwardMode.NAT
    dev: str | None = None
    interfaces: list[str] = field(default_factory=list)
    nat: NatRange | None = None
    managed: bool | None = None  # hostdev: libvirt detaches/reattaches the PCI devices
    driver_name: str | None = None  # hostdev: <driver name= model=>
    driver_model: str | None = None
    pfs: list[str] = field(default_factory=list)  # SR-IOV physical functions
    addresses: list[PciAddress] = field(default_factory=list)  # VFs by PCI address


@dataclass
class Lease:
    expiry: int
    unit: str | None = None  # "seconds" | "minutes" | "hours"; None means minutes

    @property
    def seconds(self) -> int:
        return self.expiry * {"seconds": 1, "minutes": 60, "hours": 3600, None: 60}[self.unit]


@dataclass
class DhcpRange:
    start: str
    end: str
    lease: Lease | None = None


@dataclass
class DhcpHost:
    mac: str | None = None
    id: str | None = None
    name: str | None = None
    ip: str | None = None
    lease: Lease | None = None


@dataclass
class Bootp:
    file: str
    server: str | None = None


@dataclass
class Dhcp:
    ranges: list[DhcpRange] = field(default_factory=list)
    hosts: list[DhcpHost] = field(default_factory=list)
    bootp: Bootp | None = None


@dataclass
class IP:
    """One ``<ip>``: the host's address on the network, with its DHCP and TFTP service."""

    address: str
    family: str | None = None  # as written; None means ipv4
    prefix: int | None = None
    netmask: str | None = None
    local_ptr: bool | None = None
    tftp_root: str | None = None
    dhcp: Dhcp | None = None

    @property
    def version(self) -> int:
        return 6 if self.family == "ipv6" else 4

    @property
    def prefixlen(self) -> int:
        """The prefix length from ``prefix`` or ``netmask`` (libvirt's defaults otherwise)."""
        if self.prefix is not None:
            return self.prefix
        if self.netmask is not None:
            return ipaddress.IPv4Network(f"0.0.0.0/{self.netmask}").prefixlen
        return 64 if self.version == 6 else _classful_prefix(self.address)

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return _interface(self.address, self.prefixlen)

    @property
    def subnet(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return _subnet(self.address, self.prefixlen)


@functools.lru_cache(maxsize=65536)
def _interface(address: str, prefixlen: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(f"{address}/{prefixlen}")


@functools.lru_cache(maxsize=65536)
def _subnet(address: str, prefixlen: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Shared immutable values: checking a network against a thousand others stays cheap."""
    return _interface(address, prefixlen).network


def _classful_prefix(address: str) -> int:
    first = int(address.split(".")[0]) if address.count(".") == 3 and address[0].isdigit() else 0
    return 8 if first < 128 else 16 if first < 192 else 24


@dataclass
class Route:
    address: str
    gateway: str
    family: str | None = None
    prefix: int | None = None
    netmask: str | None = None
    metric: int | None = None

    @property
    def prefixlen(self) -> int:
        if self.prefix is not None:
            return self.prefix
        if self.netmask is not None:
            return ipaddress.IPv4Network(f"0.0.0.0/{self.netmask}").prefixlen
        return 128 if self.family == "ipv6" else 32

    @property
    def destination(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.address}/{self.prefixlen}", strict=False)


@dataclass
class DnsForwarder:
    addr: str | None = None
    domain: str | None = None


@dataclass
class DnsTxt:
    name: str
    value: str


@dataclass
class DnsSrv:
    service: str
    protocol: str
    domain: str | None = None
    target: str | None = None
    port: int | None = None
    priority: int | None = None
    weight: int | None = None


@dataclass
class DnsHost:
    ip: str
    hostnames: list[str] = field(default_factory=list)


@dataclass
class Dns:
    enable: bool | None = None
    forward_plain_names: bool | None = None
    forwarders: list[DnsForwarder] = field(default_factory=list)
    txts: list[DnsTxt] = field(default_factory=list)
    srvs: list[DnsSrv] = field(default_factory=list)
    hosts: list[DnsHost] = field(default_factory=list)


@dataclass
class VlanTag:
    id: int
    native_mode: str | None = None  # "tagged" | "untagged"


@dataclass
class Vlan:
    tags: list[VlanTag] = field(default_factory=list)
    trunk: bool | None = None


@dataclass
class VirtualPort:
    type: str | None = None  # "openvswitch" | "802.1Qbg" | "802.1Qbh" | "midonet"
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class Rate:
    """One direction of ``<bandwidth>``: kilobytes per second (burst and floor in kB)."""

    average: int | None = None
    peak: int | None = None
    burst: int | None = None
    floor: int | None = None


@dataclass
class Bandwidth:
    inbound: Rate | None = None
    outbound: Rate | None = None


@dataclass
class PortGroup:
    name: str
    default: bool | None = None
    trust_guest_rx_filters: bool | None = None
    vlan: Vlan | None = None
    virtualport: VirtualPort | None = None
    bandwidth: Bandwidth | None = None
    port_isolated: bool | None = None  # <port isolated='yes'/>: a virtnet extension here


@dataclass
class Network:
    """A virtual network, as libvirt's ``<network>`` element describes it."""

    name: str
    uuid: str | None = None
    ipv6: bool | None = None
    trust_guest_rx_filters: bool | None = None
    title: str | None = None  # one line, for people (libvirt 9.7+)
    description: str | None = None  # free text, for people; kept as written
    metadata: str | None = None  # the children of <metadata>, kept verbatim
    #: libvirt's <dnsmasq:options>: raw dnsmasq lines, used only where the host opts in
    dnsmasq_options: list[str] = field(default_factory=list)
    forward: Forward | None = None
    bridge: Bridge | None = None
    mtu: int | None = None
    mac: str | None = None
    domain: Domain | None = None
    dns: Dns | None = None
    vlan: Vlan | None = None
    bandwidth: Bandwidth | None = None
    port_isolated: bool | None = None
    ips: list[IP] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    virtualport: VirtualPort | None = None
    portgroups: list[PortGroup] = field(default_factory=list)

    @property
    def mode(self) -> ForwardMode:
        """The forward mode; a network without ``<forward>`` is isolated."""
        return self.forward.mode if self.forward else ForwardMode.ISOLATED

    @property
    def forward_devices(self) -> list[str]:
        """The physical devices the network may use: ``dev`` and the interface pool."""
        if self.forward is None:
            return []
        devices = list(self.forward.interfaces)
        if self.forward.dev and self.forward.dev not in devices:
            devices.insert(0, self.forward.dev)
        return devices

    def portgroup(self, name: str | None) -> PortGroup | None:
        """The portgroup called ``name``, or the default one when ``name`` is None."""
        for group in self.portgroups:
            if (name is None and group.default) or (name is not None and group.name == name):
                return group
        return None
