"""A lab file (YAML) as validated dataclasses; every error names its path in the file.

See docs/lab.md for the format. Names of LANs, peers, guests, NICs and networks are checked
here so that nothing the lab builds is named by an unchecked string.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from virtnet.errors import InvalidInput
from virtnet.model.names import check_ifname, check_mac

_ROLE = re.compile(r"[a-z][a-z0-9]{0,7}")


@dataclass(frozen=True)
class Peer:
    name: str
    address: str  # CIDR
    routes: tuple[tuple[str, str], ...] = ()  # (destination, via)


@dataclass(frozen=True)
class Lan:
    name: str
    peers: tuple[Peer, ...]


@dataclass(frozen=True)
class HostNic:
    name: str
    lan: str
    address: str | None = None  # CIDR on the NIC (or on its bridge)
    bridge: str | None = None  # a host bridge the lab makes, with this NIC in it


@dataclass(frozen=True)
class ChassisNic:
    """An OVN lab's chassis NIC onto a LAN: a provider network (``physnet``) there."""

    chassis: str
    name: str
    lan: str
    physnet: str


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    variants: dict[str, str]  # backend ("default" too) -> libvirt XML
    default_backend: str | None = None

    def xml_for(self, backend: str | None) -> tuple[str, str | None]:
        """The XML and backend to use when the lab runs with ``--backend backend``."""
        if backend and backend in self.variants:
            return self.variants[backend], backend
        return self.variants["default"], self.default_backend


@dataclass(frozen=True)
class PortSpec:
    network: str
    ifname: str
    address: str  # "dhcp" or a CIDR
    mac: str | None = None
    spoof_check: bool = True  # a guest that routes sends other hosts' addresses: false
    isolated: bool | None = None  # an isolated port (None: the network's/portgroup's rule)


@dataclass(frozen=True)
class ForwardRule:
    """Guest routing: forward from ``inbound`` to ``outbound``, for ``to`` only, masqueraded."""

    inbound: str
    outbound: str
    to: str
    masquerade: bool = True


@dataclass(frozen=True)
class Guest:
    name: str
    ports: tuple[PortSpec, ...]
    routes: tuple[tuple[str, str], ...] = ()
    forward: tuple[ForwardRule, ...] = ()
    host: str | None = None  # the chassis it runs on (OVN labs)


@dataclass(frozen=True)
class Expect:
    """``source`` reaches ``target`` (or, with ``resolve``, asks ``target`` — a DNS server —
    for a name and must get ``answer``)."""

    source: str
    target: str
    ping: bool | None = None
    tcp: int | None = None
    reachable: bool = True
    seen_as: str | None = None  # the address the target must see (NAT)
    resolve: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class LabSpec:
    name: str
    lans: tuple[Lan, ...]
    nics: tuple[HostNic, ...]
    networks: tuple[NetworkSpec, ...]
    guests: tuple[Guest, ...]
    expect: tuple[Expect, ...] = field(default=())
    #: an OVN lab's chassis (each a host with its own Open vSwitch and ovn-controller) and
    #: their NICs onto LANs; empty for a one-host lab
    chassis: tuple[str, ...] = ()
    chassis_nics: tuple[ChassisNic, ...] = ()

    def network(self, name: str) -> NetworkSpec:
        return next(n for n in self.networks if n.name == name)


def load(path: str | Path) -> LabSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", subject="FILE") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"not valid YAML: {exc}", subject=str(path)) from None
    return parse(data, base=path.parent)


def parse(data: Any, base: Path = Path(".")) -> LabSpec:
    root = _map(data, "lab")
    name = _role(_req(root, "name", "lab"), "name")
    lans = tuple(_lan(k, v) for k, v in _map(root.get("lans", {}), "lans").items())
    lan_names = {lan.name for lan in lans}
    host = _map(root.get("host", {}), "host")
    nics = tuple(_nic(k, v, lan_names) for k, v in _map(host.get("nics", {}), "host.nics").items())
    chassis, chassis_nics = _ovn(root, lan_names)
    networks = tuple(
        _network(k, v, base) for k, v in _map(_req(root, "networks", "lab"), "networks").items()
    )
    net_names = {n.name for n in networks}
    guests = tuple(
        _guest(k, v, net_names, chassis) for k, v in _map(root.get("guests", {}), "guests").items()
    )
    spec = LabSpec(name, lans, nics, networks, guests, (), chassis, chassis_nics)
    names = _endpoints(spec)
    expect = tuple(
        _expect(i, e, names) for i, e in enumerate(_list(root.get("expect", []), "expect"))
    )
    known = {"name", "lans", "host", "networks", "guests", "expect", "ovn", "hosts"}
    _unknown(root, known, "lab")
    return LabSpec(name, lans, nics, networks, guests, expect, chassis, chassis_nics)


def _ovn(root: dict[str, Any], lans: set[str]) -> tuple[tuple[str, ...], tuple[ChassisNic, ...]]:
    """``ovn: {chassis: [hv1, ...]}`` and ``hosts: {hv1: {nics: {eth0: {lan, physnet}}}}``."""
    if "ovn" not in root:
        if "hosts" in root:
            raise InvalidInput(
                "hosts: are the chassis of an OVN lab (ovn: missing)", subject="hosts"
            )
        return (), ()
    if "host" in root:
        raise InvalidInput("an OVN lab has hosts: (one per chassis), not host:", subject="host")
    body = _map(root["ovn"], "ovn")
    _unknown(body, {"chassis"}, "ovn")
    chassis = tuple(
        _role(str(c), f"ovn.chassis[{i}]")
        for i, c in enumerate(_list(_req(body, "chassis", "ovn"), "ovn.chassis"))
    )
    if not chassis or len(set(chassis)) != len(chassis):
        raise InvalidInput("one or more chassis, each named once", subject="ovn.chassis")
    nics = []
    for host, data in _map(root.get("hosts", {}), "hosts").items():
        path = f"hosts.{host}"
        if host not in chassis:
            raise InvalidInput(f"{host!r} is not one of ovn.chassis", subject=path)
        entry = _map(data, path)
        _unknown(entry, {"nics"}, path)
        for nic, spec in _map(entry.get("nics", {}), f"{path}.nics").items():
            npath = f"{path}.nics.{nic}"
            check_ifname(nic, npath)
            n = _map(spec, npath)
            _unknown(n, {"lan", "physnet"}, npath)
            lan = str(_req(n, "lan", npath))
            if lan not in lans:
                raise InvalidInput(f"unknown LAN {lan!r}", subject=f"{npath}.lan")
            physnet = str(n.get("physnet", lan))
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,12}", physnet):
                raise InvalidInput(f"{physnet!r}: 1-12 letters, digits, - or _",
                                   subject=f"{npath}.physnet")  # fmt: skip
            nics.append(ChassisNic(host, nic, lan, physnet))
    return chassis, tuple(nics)


# --- pieces -----------------------------------------------------------------------------------
def _lan(name: str, data: Any) -> Lan:
    path = f"lans.{name}"
    _role(name, path)
    body = _map(data, path)
    peers = []
    for peer_name, peer in _map(body.get("peers", {}), f"{path}.peers").items():
        ppath = f"{path}.peers.{peer_name}"
        _role(peer_name, ppath)
        p = _map(peer, ppath)
        peers.append(
            Peer(peer_name, _cidr(_req(p, "address", ppath), f"{ppath}.address"),
                 _routes(p.get("routes", []), f"{ppath}.routes"))
        )  # fmt: skip
        _unknown(p, {"address", "routes"}, ppath)
    _unknown(body, {"peers"}, path)
    return Lan(name, tuple(peers))


def _nic(name: str, data: Any, lans: set[str]) -> HostNic:
    path = f"host.nics.{name}"
    check_ifname(name, path)
    body = _map(data, path)
    lan = _req(body, "lan", path)
    if lan not in lans:
        raise InvalidInput(f"unknown LAN {lan!r}", subject=f"{path}.lan")
    address = body.get("address")
    bridge = body.get("bridge")
    _unknown(body, {"lan", "address", "bridge"}, path)
    return HostNic(
        name,
        lan,
        _cidr(address, f"{path}.address") if address else None,
        check_ifname(str(bridge), f"{path}.bridge") if bridge else None,
    )


def _network(name: str, data: Any, base: Path) -> NetworkSpec:
    path = f"networks.{name}"
    body = _map(data, path)
    variants: dict[str, str] = {}
    default = _xml(body, path, base)
    if default is None:
        raise InvalidInput("needs xml or file", subject=path)
    variants["default"] = default
    for on, variant in _map(body.get("variants", {}), f"{path}.variants").items():
        vpath = f"{path}.variants.{on}"
        xml = _xml(_map(variant, vpath), vpath, base)
        if xml is None:
            raise InvalidInput("needs xml or file", subject=vpath)
        variants[on] = xml
    _unknown(body, {"xml", "file", "backend", "variants"}, path)
    backend = body.get("backend")
    return NetworkSpec(name, variants, str(backend) if backend else None)


def _xml(body: dict[str, Any], path: str, base: Path) -> str | None:
    if "xml" in body:
        return str(body["xml"])
    if "file" in body:
        try:
            return (base / str(body["file"])).read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read: {exc.strerror}", subject=f"{path}.file") from None
    return None


def _guest(name: str, data: Any, networks: set[str], chassis: tuple[str, ...] = ()) -> Guest:
    path = f"guests.{name}"
    _role(name, path)
    body = _map(data, path)
    host = body.get("host")
    if chassis and host not in chassis:
        raise InvalidInput(f"the chassis it runs on, one of {', '.join(chassis)}",
                           subject=f"{path}.host")  # fmt: skip
    if not chassis and host is not None:
        raise InvalidInput("host: is for guests of an OVN lab (ovn: missing)", subject=path)
    ports = []
    for i, port in enumerate(_list(_req(body, "ports", path), f"{path}.ports")):
        ppath = f"{path}.ports[{i}]"
        p = _map(port, ppath)
        network = _req(p, "network", ppath)
        if network not in networks:
            raise InvalidInput(f"unknown network {network!r}", subject=f"{ppath}.network")
        address = str(p.get("address", "dhcp"))
        if address != "dhcp":
            _cidr(address, f"{ppath}.address")
        mac = check_mac(str(p["mac"]), f"{ppath}.mac") if "mac" in p else None
        ifname = check_ifname(str(p.get("ifname", f"eth{i}")), f"{ppath}.ifname")
        _unknown(p, {"network", "ifname", "address", "mac", "spoof_check", "isolated"}, ppath)
        isolated = bool(p["isolated"]) if "isolated" in p else None
        ports.append(
            PortSpec(network, ifname, address, mac, bool(p.get("spoof_check", True)), isolated)
        )
    forward = []
    for i, rule in enumerate(_list(body.get("forward", []), f"{path}.forward")):
        rpath = f"{path}.forward[{i}]"
        r = _map(rule, rpath)
        forward.append(
            ForwardRule(
                check_ifname(str(_req(r, "from", rpath)), f"{rpath}.from"),
                check_ifname(str(_req(r, "to", rpath)), f"{rpath}.to"),
                _net(str(_req(r, "destination", rpath)), f"{rpath}.destination"),
                bool(r.get("masquerade", True)),
            )
        )
        _unknown(r, {"from", "to", "destination", "masquerade"}, rpath)
    _unknown(body, {"ports", "routes", "forward", "host"}, path)
    return Guest(name, tuple(ports), _routes(body.get("routes", []), f"{path}.routes"),
                 tuple(forward), str(host) if host else None)  # fmt: skip


def _endpoints(spec: LabSpec) -> set[str]:
    """Names an expectation may use: peers, guests, ``guest.ifname``, ``host.nic``,
    ``host.NETWORK`` (the host's address on a virtual network)."""
    names = {p.name for lan in spec.lans for p in lan.peers}
    for guest in spec.guests:
        names.add(guest.name)
        names |= {f"{guest.name}.{port.ifname}" for port in guest.ports}
    names |= {f"host.{nic.name}" for nic in spec.nics}
    names |= {f"host.{net.name}" for net in spec.networks}
    if spec.chassis:  # an OVN network's address on its provider network (its SNAT address)
        names |= {f"uplink.{net.name}" for net in spec.networks}
    return names


def _expect(index: int, data: Any, names: set[str]) -> Expect:
    path = f"expect[{index}]"
    body = _map(data, path)
    source, target = str(_req(body, "from", path)), str(_req(body, "to", path))
    for key, value in (("from", source), ("to", target)):
        if value not in names:
            raise InvalidInput(f"unknown endpoint {value!r}", subject=f"{path}.{key}")
    if "from" in body and source.startswith(("host.", "uplink.")):
        raise InvalidInput("checks start from a guest or a LAN peer", subject=f"{path}.from")
    tcp = body.get("tcp")
    seen_as = body.get("seen_as")
    if seen_as is not None and str(seen_as) not in names:
        raise InvalidInput(f"unknown endpoint {seen_as!r}", subject=f"{path}.seen_as")
    _unknown(body, {"from", "to", "ping", "tcp", "reach", "seen_as", "resolve", "answer"}, path)
    resolve = body.get("resolve")
    if resolve is not None and "answer" not in body:
        raise InvalidInput("resolve needs the answer expected", subject=f"{path}.answer")
    return Expect(
        source,
        target,
        ping=bool(body.get("ping", resolve is None)),
        tcp=int(tcp) if tcp is not None else None,
        reachable=bool(body.get("reach", True)),
        seen_as=str(seen_as) if seen_as is not None else None,
        resolve=str(resolve) if resolve is not None else None,
        answer=str(body["answer"]) if resolve is not None else None,
    )


# --- helpers ----------------------------------------------------------------------------------
def _map(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("must be a mapping", subject=path)
    for key in value:
        if isinstance(key, bool):
            raise InvalidInput(
                f"a key reads as {str(key).lower()} (YAML takes bare on/off/yes/no as "
                "booleans; quote it)",
                subject=path,
            )
    return {str(k): v for k, v in value.items()}


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput("must be a list", subject=path)
    return value


def _req(body: dict[str, Any], key: str, path: str) -> Any:
    if key not in body:
        raise InvalidInput(f"{key!r} is required", subject=path)
    return body[key]


def _unknown(body: dict[str, Any], known: set[str], path: str) -> None:
    extra = sorted(set(body) - known)
    if extra:
        raise InvalidInput(f"unknown key {extra[0]!r}", subject=path)


def _role(name: str, path: str) -> str:
    if not _ROLE.fullmatch(name):
        raise InvalidInput(
            f"{name!r} must be 1-8 lower-case letters or digits, starting with a letter",
            subject=path,
        )
    return name


def _cidr(value: Any, path: str) -> str:
    try:
        return str(ipaddress.ip_interface(str(value)))
    except ValueError:
        raise InvalidInput(f"{value!r} is not an address/prefix", subject=path) from None


def _net(value: str, path: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InvalidInput(f"{value!r} is not a network", subject=path) from None


def _routes(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    routes = []
    for i, route in enumerate(_list(value, path)):
        r = _map(route, f"{path}[{i}]")
        to = str(_req(r, "to", f"{path}[{i}]"))
        via = str(_req(r, "via", f"{path}[{i}]"))
        if to != "default":
            _net(to, f"{path}[{i}].to")
        try:
            ipaddress.ip_address(via)
        except ValueError:
            raise InvalidInput(f"{via!r} is not an address", subject=f"{path}[{i}].via") from None
        routes.append((to, via))
    return tuple(routes)
