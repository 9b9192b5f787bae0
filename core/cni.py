"""``virtnet-cni``: a CNI plugin (spec 1.1) that attaches a container to a virtnet network.

A container runtime (podman's CNI backend, containerd, CRI-O, cnitool) runs it with
``CNI_COMMAND`` and the network configuration on stdin::

    {"cniVersion": "1.0.0", "name": "web", "type": "virtnet-cni",
     "network": "default", "netns": "myhost"}

``network`` is the virtnet network (default: the configuration's ``name``); ``netns`` or
``socket`` picks the virtnetd to ask (default: the machine's own). Everything goes through
virtnetd: a veth port into the container's namespace (anti-spoofing, QoS and events like any
port), an IPv4 address from the network's DHCP range held as a reservation of the port's MAC
(:mod:`virtnet.ipam`; dnsmasq never gives it to another guest and its DNS answers for it),
the address and a default route through the network's gateway inside the container.

Commands: ADD (idempotent: the same container and interface get the same port back), DEL
(idempotent, also when the port, the namespace or the daemon's network is gone), CHECK
(the port, its link and its address are there), STATUS (virtnetd answers and the network is
active), GC (ports of this configuration whose container is not in
``cni.dev/valid-attachments``, and addresses reserved by a half-done ADD), VERSION. Errors
are the spec's JSON on stdout with its codes, exit status 1.

A port is known by its uuid, derived from (configuration name, container id, interface):
DEL, CHECK and GC need nothing else, whatever state the runtime kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from virtnet.errors import Conflict, InvalidInput, NotFound, Unsupported, VirtnetError

SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
#: The first octets of the MACs this plugin makes: locally administered, so they never
#: collide with a vendor's NIC, and GC can tell its own reservations apart.
MAC_PREFIX = "0a:58"
OWNER_PREFIX = "cni:"
NAMESPACE = uuid.UUID("5b2b36a4-4d7e-4a59-9a4a-2f0d2c8e7c11")  # of this plugin's port uuids

# The spec's error codes.
INCOMPATIBLE_VERSION, UNSUPPORTED_FIELD, UNKNOWN_CONTAINER = 1, 2, 3
INVALID_ENVIRONMENT, IO_FAILURE, DECODE_FAILURE, INVALID_CONFIG = 4, 5, 6, 7
TRY_AGAIN, NOT_AVAILABLE = 11, 50


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def port_uuid(config_name: str, container: str, ifname: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{config_name}/{container}/{ifname}"))


def owner_name(config_name: str, container: str, ifname: str) -> str:
    return f"{OWNER_PREFIX}{config_name}:{container}:{ifname}"


def _netns_name(path: str) -> str:
    """virtnet names namespaces as ``ip netns`` does: runtimes mount theirs in /run/netns."""
    for directory in ("/run/netns/", "/var/run/netns/"):
        if path.startswith(directory) and "/" not in path[len(directory) :]:
            return path[len(directory) :]
    raise CniError(
        INVALID_ENVIRONMENT,
        f"CNI_NETNS={path}: virtnet attaches to namespaces "
        "mounted in /run/netns (podman, containerd and CRI-O put theirs there)",
    )


class Plugin:
    def __init__(self, env: dict[str, str], config: dict[str, Any]) -> None:
        self.env, self.config = env, config
        self.version = str(config.get("cniVersion", "1.1.0"))
        if self.version not in SUPPORTED:
            raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {self.version} is not supported",
                           f"supported: {', '.join(SUPPORTED)}")  # fmt: skip
        self.name = str(config.get("name") or "")
        if not self.name:
            raise CniError(INVALID_CONFIG, "the configuration has no name")
        self.network = str(config.get("network") or self.name)

    def _need(self, key: str) -> str:
        value = self.env.get(key, "")
        if not value:
            raise CniError(INVALID_ENVIRONMENT, f"{key} is not set")
        return value

    def client(self) -> Any:
        from virtnet.client import Client, DaemonNotRunning

        try:
            return Client.connect(self.config.get("socket"), netns=self.config.get("netns"),
                                  timeout=60)  # fmt: skip
        except DaemonNotRunning as exc:
            raise CniError(TRY_AGAIN, f"virtnetd does not answer: {exc}") from None

    # commands ---------------------------------------------------------------------------------
    def add(self) -> dict[str, Any]:
        container, ifname = self._need("CNI_CONTAINERID"), self._need("CNI_IFNAME")
        netns = _netns_name(self._need("CNI_NETNS"))
        uid = port_uuid(self.name, container, ifname)
        with self.client() as vn:
            existing = _port(vn, uid)
            if existing is None:
                mac = self._requested_mac() or _mac()
                given = vn.call("reserve_address", network=self.network, mac=mac,
                                address=self._requested_ip())  # fmt: skip
                try:
                    existing = vn.create_port(self.network, _port_xml(
                        uid, mac, owner_name(self.name, container, ifname), netns, ifname,
                        given["address"]))  # fmt: skip
                except BaseException:
                    if given.get("new"):  # only what this ADD reserved: never another's
                        vn.call("release_address", network=self.network, mac=mac)
                    raise
            else:
                given = vn.call("reserve_address", network=self.network, mac=existing["mac"])
        _configure(netns, ifname, given)
        return self._result(existing, given, netns, ifname)

    def _requested_mac(self) -> str | None:
        """A MAC the runtime asks for (``podman run --mac-address``: the ``mac`` capability in
        ``runtimeConfig``, or ``MAC=`` in ``CNI_ARGS``); the daemon checks it."""
        runtime = self.config.get("runtimeConfig") or {}
        mac = runtime.get("mac") if isinstance(runtime, dict) else None
        for pair in self.env.get("CNI_ARGS", "").split(";"):
            key, _, value = pair.partition("=")
            if key == "MAC" and value:
                mac = mac or value
        return str(mac) if mac else None

    def _requested_ip(self) -> str | None:
        """An IPv4 address the runtime asks for (``podman run --ip``: the ``ips`` capability,
        or ``IP=`` in ``CNI_ARGS``), without its prefix length: the network's is used."""
        runtime = self.config.get("runtimeConfig") or {}
        ips = runtime.get("ips") if isinstance(runtime, dict) else None
        wanted = [str(ip).split("/")[0] for ip in ips or [] if ":" not in str(ip)]
        for pair in self.env.get("CNI_ARGS", "").split(";"):
            key, _, value = pair.partition("=")
            if key == "IP" and value:
                wanted.append(value.split("/")[0])
        return wanted[0] if wanted else None

    def delete(self) -> None:
        container, ifname = self._need("CNI_CONTAINERID"), self._need("CNI_IFNAME")
        with self.client() as vn:
            self._delete(vn, port_uuid(self.name, container, ifname))

    def _delete(self, vn: Any, uid: str) -> None:
        port = _port(vn, uid)
        if port is None:
            return
        with contextlib.suppress(NotFound):  # deleted meanwhile: DEL is idempotent
            vn.delete_port(uid)
        vn.call("release_address", network=port["network"], mac=port["mac"])

    def check(self) -> None:
        container, ifname = self._need("CNI_CONTAINERID"), self._need("CNI_IFNAME")
        netns = _netns_name(self._need("CNI_NETNS"))
        with self.client() as vn:
            port = _port(vn, port_uuid(self.name, container, ifname))
        if port is None:
            raise CniError(UNKNOWN_CONTAINER, f"no virtnet port for {container} {ifname}")
        attachment = port["attachment"]
        if attachment.get("netns") != netns:
            raise CniError(UNKNOWN_CONTAINER, f"the port is in {attachment.get('netns')}, "
                           f"not {netns}")  # fmt: skip
        # this attachment's addresses (a chain's prevResult also lists other plugins')
        wanted = set(attachment.get("addresses") or [])
        present = _addresses(netns, ifname)
        if present is None:
            raise CniError(UNKNOWN_CONTAINER, f"{ifname} is missing in {netns}")
        if not wanted <= present:
            raise CniError(
                UNKNOWN_CONTAINER, f"{ifname} lacks {', '.join(sorted(wanted - present))}"
            )

    def status(self) -> None:
        try:
            with self.client() as vn:
                listed = vn.list_networks(inactive=False)
        except CniError as exc:
            raise CniError(NOT_AVAILABLE, exc.msg) from None
        if self.network not in {n["name"] for n in listed}:
            raise CniError(NOT_AVAILABLE, f"virtnet network {self.network!r} is not active")

    def gc(self) -> None:
        valid = {
            port_uuid(self.name, str(a.get("containerID")), str(a.get("ifname")))
            for a in self.config.get("cni.dev/valid-attachments") or []
        }
        mine = f"{OWNER_PREFIX}{self.name}:"  # then the container id: this configuration's
        with self.client() as vn:
            ports = vn.list_ports(self.network)
            for port in ports:
                owner = (port.get("owner") or {}).get("name", "")
                if owner.startswith(mine) and port["uuid"] not in valid:
                    self._delete(vn, port["uuid"])
            # addresses a killed ADD reserved for a port it never made
            macs = {p["mac"] for p in vn.list_ports(self.network)}
            for lease in _reservations(vn, self.network):
                if lease.startswith(MAC_PREFIX) and lease not in macs:
                    vn.call("release_address", network=self.network, mac=lease)

    def _result(self, port: dict[str, Any], given: dict[str, Any], netns: str,
                ifname: str) -> dict[str, Any]:  # fmt: skip
        """This attachment's result, after ``prevResult``'s when a plugin ran before this one
        in the chain (the spec: a plugin passes on what it was given, adding its own)."""
        previous = self.config.get("prevResult") or {}
        interfaces = list(previous.get("interfaces") or [])
        ip: dict[str, Any] = {
            "address": f"{given['address']}/{given['prefixlen']}",
            "gateway": given["gateway"],
            "interface": len(interfaces) + 1,  # the container's end, after the host's
        }
        if self.version < "1.0.0":
            ip["version"] = "4"
        interfaces += [
            {"name": port["attachment"]["ifname"], "mac": ""},  # the host's end
            {"name": ifname, "mac": port["mac"], "sandbox": self.env["CNI_NETNS"]},
        ]
        dns = dict(previous.get("dns") or {})
        dns["nameservers"] = list(dns.get("nameservers") or []) + [
            n for n in given["nameservers"] if n not in (dns.get("nameservers") or [])
        ]
        return {
            "cniVersion": self.version,
            "interfaces": interfaces,
            "ips": [*(previous.get("ips") or []), ip],
            "routes": [
                *(previous.get("routes") or []),
                {"dst": "0.0.0.0/0", "gw": given["gateway"]},
            ],
            "dns": dns,
        }


def _port(vn: Any, uid: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = vn.call("get_port", uuid=uid)
        return found
    except NotFound:
        return None


def _reservations(vn: Any, network: str) -> list[str]:
    """The MACs the live network reserves addresses for."""
    from virtnet.model import parse_network

    net = parse_network(vn.dumpxml(network))
    return [h.mac.lower() for ip in net.ips if ip.dhcp for h in ip.dhcp.hosts if h.mac]


def _mac() -> str:
    return MAC_PREFIX + "".join(f":{random.randrange(256):02x}" for _ in range(4))


def _port_xml(uid: str, mac: str, owner: str, netns: str, ifname: str, address: str) -> str:
    from virtnet.xmlns import ATTACHMENT_NS, escape, quoted

    return (
        f"<networkport><uuid>{uid}</uuid><owner><name>{escape(owner)}</name><uuid>{uid}</uuid>"
        f"</owner><mac address='{mac}'/>"
        f"<virtnet:attachment xmlns:virtnet='{ATTACHMENT_NS}' "
        f"kind='veth' netns={quoted(netns)} guestIfname={quoted(ifname)}>"
        f"<virtnet:ip address='{address}'/></virtnet:attachment></networkport>"
    )


def _configure(netns: str, ifname: str, given: dict[str, Any]) -> None:
    """The address and the default route inside the container (as root: the runtime's), with
    bare rtnetlink requests: pyroute2's import alone would double an ADD's time."""
    import errno

    from virtnet.ownership import ROUTE_PROTOCOL
    from virtnet.services.netlink import in_namespace_raw
    from virtnet.services.rtnl import Rtnl, RtnlError

    def apply(rtnl: Rtnl) -> None:
        link = rtnl.link(ifname)
        if link is None:
            raise CniError(UNKNOWN_CONTAINER, f"{ifname} is missing in the container")
        index = link.index
        steps: list[Callable[[], None]] = [
            lambda: rtnl.add_address(index, given["address"], int(given["prefixlen"])),
            lambda: rtnl.set_link(index, up=True),
            lambda: rtnl.add_default_route(given["gateway"], ROUTE_PROTOCOL),
        ]
        for step in steps:
            try:
                step()
            except RtnlError as exc:
                if exc.code != errno.EEXIST:  # a repeated ADD: there already
                    raise

    in_namespace_raw(netns, apply)


def _addresses(netns: str, ifname: str) -> set[str] | None:
    from virtnet.services.netlink import Netlink, in_namespace

    def read(nl: Netlink) -> set[str] | None:
        index = nl.index(ifname)
        if index is None:
            return None
        return {str(a.get_attr("IFA_ADDRESS")) for a in nl.ipr.get_addr(index=index)}

    return in_namespace(netns, read)


COMMANDS: dict[str, Callable[[Plugin], Any]] = {
    "ADD": Plugin.add,
    "DEL": Plugin.delete,
    "CHECK": Plugin.check,
    "STATUS": Plugin.status,
    "GC": Plugin.gc,
}


def _fail(version: str, error: CniError) -> NoReturn:
    body = {"cniVersion": version, "code": error.code, "msg": error.msg}
    if error.details:
        body["details"] = error.details
    print(json.dumps(body))
    sys.exit(1)


def main() -> None:
    env = dict(os.environ)
    command = env.get("CNI_COMMAND", "")
    raw = sys.stdin.read()
    version = "1.1.0"
    try:
        try:
            config = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise CniError(DECODE_FAILURE, f"the configuration is not JSON: {exc}") from None
        if not isinstance(config, dict):
            raise CniError(DECODE_FAILURE, "the configuration is not a JSON object")
        version = str(config.get("cniVersion", version))
        if command == "VERSION":
            print(json.dumps({"cniVersion": version if version in SUPPORTED else "1.1.0",
                              "supportedVersions": SUPPORTED}))  # fmt: skip
            return
        action = COMMANDS.get(command)
        if action is None:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND={command!r}: expected ADD, DEL, "
                           "CHECK, STATUS, GC or VERSION")  # fmt: skip
        plugin = Plugin(env, config)
        try:
            result = action(plugin)
        except NotFound as exc:
            if command == "DEL":
                return  # the network or the port is gone: nothing left to delete
            raise CniError(INVALID_CONFIG if "network" in str(exc) else UNKNOWN_CONTAINER,
                           str(exc)) from None  # fmt: skip
        except (InvalidInput, Unsupported) as exc:
            raise CniError(INVALID_CONFIG, str(exc)) from None
        except Conflict as exc:  # e.g. the network is not active (yet): the runtime may retry
            raise CniError(TRY_AGAIN, str(exc)) from None
        except VirtnetError as exc:  # the datapath failed (and rolled back), or a conflict
            raise CniError(IO_FAILURE, str(exc)) from None
        if result is not None:
            print(json.dumps(result))
    except CniError as exc:
        _fail(version, exc)


if __name__ == "__main__":
    main()
