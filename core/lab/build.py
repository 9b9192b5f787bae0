"""``lab up`` and ``lab down``: namespaces for LAN peers, the host and guests; virtnet's own
networks and ports in the host namespace; guest addressing, routes and forwarding."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from virtnet.api import Virtnet
from virtnet.errors import Conflict, OperationFailed
from virtnet.lab.record import Record
from virtnet.lab.spec import Guest, LabSpec, Lan
from virtnet.model import parse_network
from virtnet.model.network import ForwardMode
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.progress import Progress
from virtnet.testing.guest import dhcp_lease
from virtnet.testing.netns import Namespace


def ns_name(lab: str, role: str) -> str:
    """``vl<hash of the lab's name>-<role>``: stable, so ``down`` finds them by name too."""
    return f"vl{hashlib.sha1(lab.encode()).hexdigest()[:5]}-{role}"


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise OperationFailed(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


class Builder:
    def __init__(self, spec: LabSpec, backend: str | None, progress: Progress) -> None:
        self.spec, self.backend, self.progress = spec, backend, progress
        self.record = Record(spec.name)
        self.addresses: dict[str, str] = {}  # endpoint name -> address (for checks)
        self.ovs: Any = None  # virtnet.testing.ovs.OvsServer, when the lab needs one

    def namespace(self, role: str) -> Namespace:
        name = ns_name(self.spec.name, role)
        self.record.add_namespace(name)
        run("ip", "netns", "add", name)
        ns = Namespace(name)
        ns.ip("link", "set", "lo", "up")
        return ns

    def steps(self) -> int:
        """How many steps :meth:`up` shows: the OVS it may start, LANs, networks, guest ports."""
        ports = sum(len(g.ports) for g in self.spec.guests)
        return int(self._needs_ovs()) + len(self.spec.lans) + len(self.spec.networks) + ports

    def up(self) -> dict[str, str]:
        if Record.load(self.spec.name) is not None:
            raise Conflict(f"lab {self.spec.name!r} is already up (or was killed): lab down first")
        self.record.save()
        if self.spec.chassis:
            from virtnet.lab.ovn import up_ovn

            up_ovn(self)
            self.record.addresses = self.addresses
            self.record.save()
            return self.addresses
        host = self.namespace("host")
        self.record.host = host.name
        self.record.save()
        if self._needs_ovs():
            self._start_ovs(host)
        self._lans(host)
        with Virtnet(self.record.state_dir, self.record.run_dir, netns=host.name) as vn:
            for net in self.spec.networks:
                xml, backend = net.xml_for(self.backend)
                on = f" on {backend}" if backend else ""
                self.progress.step(f"network {net.name}: starting{on}")
                started = vn.create_network(xml, backend=backend)
                for ip in started.ips:
                    self.addresses.setdefault(f"host.{net.name}", ip.address)
                subnets = ", ".join(f"{ip.address}/{ip.prefixlen}" for ip in started.ips)
                self.progress.say(
                    f"  network {net.name}: started{on}" + (f", {subnets}" if subnets else "")
                )
            for guest in self.spec.guests:
                self.guest(vn, guest)
        self.record.addresses = self.addresses
        self.record.backend = self.backend
        self.record.save()
        return self.addresses

    def lan(self, lan: Lan) -> Namespace:
        """The LAN's wire (a namespace with a bridge ``sw``) and its peers on it."""
        self.progress.step(f"LAN {lan.name}: {len(lan.peers)} peer(s)")
        wire = self.namespace(lan.name)
        run("ip", "-n", wire.name, "link", "add", "sw", "type", "bridge", "stp_state", "0")
        run("ip", "-n", wire.name, "link", "set", "sw", "up")
        for peer in lan.peers:
            ns = self.namespace(peer.name)
            cable(ns, "eth0", wire, f"p-{peer.name}", master="sw")
            ns.ip("addr", "add", peer.address, "dev", "eth0")
            for to, via in peer.routes:
                ns.ip("route", "add", to, "via", via)
            self.addresses[peer.name] = peer.address.split("/")[0]
        return wire

    def _lans(self, host: Namespace) -> None:
        for lan in self.spec.lans:
            wire = self.lan(lan)
            for nic in (n for n in self.spec.nics if n.lan == lan.name):
                cable(host, nic.name, wire, f"h-{nic.name}", master="sw")
                target = nic.name
                kind = self._host_bridges().get(nic.bridge or "")
                if nic.bridge and kind == "linux":
                    host.ip("link", "add", nic.bridge, "type", "bridge", "stp_state", "0")
                    host.ip("link", "set", nic.name, "master", nic.bridge)
                    host.ip("link", "set", nic.bridge, "up")
                    target = nic.bridge
                elif nic.bridge and kind == "ovs":
                    self.ovs.vsctl("add-br", nic.bridge, "--", "set", "bridge", nic.bridge,
                                   "datapath_type=netdev", "--", "add-port", nic.bridge,
                                   nic.name)  # fmt: skip
                    host.ip("link", "set", nic.bridge, "up")
                    target = nic.bridge
                if nic.address and target == nic.name and nic.name in self._direct_devices():
                    # macvtap guests cannot reach the host through their lower device; the
                    # usual way around: the host's address on a macvlan (bridge mode) of it
                    target = f"{nic.name}.h"
                    host.ip("link", "add", "link", nic.name, "name", target, "type", "macvlan",
                            "mode", "bridge")  # fmt: skip
                    host.ip("link", "set", target, "up")
                    self.progress.say(
                        f"  host: {nic.address} on macvlan {target}, so direct guests reach it"
                    )
                if nic.address:
                    host.ip("addr", "add", nic.address, "dev", target)
                    self.addresses[f"host.{nic.name}"] = nic.address.split("/")[0]

    def _host_bridges(self) -> dict[str, str]:
        """Host bridges the chosen networks attach to, and their kind (``linux`` or ``ovs``):
        a NIC is only bridged for them (a macvtap variant needs the bare NIC)."""
        kinds = {}
        for net in self.spec.networks:
            parsed = parse_network(net.xml_for(self.backend)[0])
            if parsed.mode is ForwardMode.BRIDGE and parsed.bridge and parsed.bridge.name:
                ovs = parsed.virtualport is not None and parsed.virtualport.type == "openvswitch"
                kinds[parsed.bridge.name] = "ovs" if ovs else "linux"
        return kinds

    def _direct_devices(self) -> set[str]:
        """Host NICs a chosen network attaches guests to directly (macvtap)."""
        devices: set[str] = set()
        for net in self.spec.networks:
            parsed = parse_network(net.xml_for(self.backend)[0])
            if not (parsed.bridge and parsed.bridge.name):
                devices.update(parsed.forward_devices)
        return devices

    def _needs_ovs(self) -> bool:
        return "ovs" in self._host_bridges().values() or any(
            net.xml_for(self.backend)[1] == "ovs" for net in self.spec.networks
        )

    def _start_ovs(self, host: Namespace) -> None:
        """A private Open vSwitch in the lab's host namespace (this kernel has no OVS module:
        its bridges use the userspace datapath)."""
        from virtnet.testing.ovs import OvsServer

        self.progress.step("Open vSwitch: starting a private ovsdb-server and ovs-vswitchd")
        self.ovs = OvsServer(host)
        self.record.ovsdb = self.ovs.remote
        self.record.save()
        self.ovs.start()
        for pid_file in ("ovsdb.pid", "vswitchd.pid"):
            self.record.add_pid(int((self.ovs.dir / pid_file).read_text()))
        os.environ["VIRTNET_OVSDB"] = self.ovs.remote

    def guest(self, vn: Virtnet, guest: Guest) -> None:
        ns = self.namespace(guest.name)
        routed = False
        for port in guest.ports:
            self.progress.step(f"guest {guest.name}: {port.ifname} on {port.network}")
            made = vn.create_port(
                port.network,
                NetworkPort(
                    network=port.network,
                    mac=port.mac,
                    isolated=port.isolated,
                    attachment=Attachment(
                        AttachmentKind.VETH,
                        netns=ns.name,
                        guest_ifname=port.ifname,
                        spoof_check=None if port.spoof_check else False,
                    ),
                ),
            )
            if port.address == "dhcp":
                address = dhcp_lease(ns, port.ifname, hostname=guest.name)
                if address is None:  # say what the network's own check sees, if anything
                    problems = "; ".join(vn.check_network(port.network)) or "network in sync"
                    raise OperationFailed(
                        f"guest {guest.name}: no DHCP lease on {port.ifname} ({problems})"
                    )
                if routed:  # one default route: the first DHCP NIC's
                    _drop_default(ns, port.ifname)
                routed = True
            else:
                ns.ip("addr", "add", port.address, "dev", port.ifname)
                address = port.address.split("/")[0]
            self.progress.say(f"  guest {guest.name}: {port.ifname} on {port.network}, {address}"
                              f" (port {made.uuid})")  # fmt: skip
            self.addresses.setdefault(guest.name, address)
            self.addresses[f"{guest.name}.{port.ifname}"] = address
        for to, via in guest.routes:
            ns.ip("route", "replace", to, "via", via)
        if guest.forward:
            _forwarding(ns, guest)


def cable(a: Namespace, a_if: str, b: Namespace, b_if: str, master: str | None = None) -> None:
    a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
    # full checksums on the wire, as a physical NIC delivers them (OVS's userspace datapath
    # forwards what it reads from a veth before offloaded checksums are filled)
    a.exec("ethtool", "-K", a_if, "tx", "off", check=False)
    b.exec("ethtool", "-K", b_if, "tx", "off", check=False)
    a.ip("link", "set", a_if, "up")
    if master:
        b.ip("link", "set", b_if, "master", master)
    b.ip("link", "set", b_if, "up")


def _drop_default(ns: Namespace, ifname: str) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):
        ns.ip("route", "del", "default", "dev", ifname, check=True)


def _forwarding(ns: Namespace, guest: Guest) -> None:
    """A guest that routes: forwarding on, only the listed flows, masqueraded if asked."""
    run("ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    rules = [
        "add table inet lab",
        "add chain inet lab routed { type filter hook forward priority 0 ; policy drop ; }",
        "add rule inet lab routed ct state established,related accept",
        "add chain inet lab masq { type nat hook postrouting priority 100 ; }",
    ]
    for r in guest.forward:
        family = "ip" if ipaddress.ip_network(r.to).version == 4 else "ip6"
        rules.append(
            f'add rule inet lab routed iifname "{r.inbound}" oifname "{r.outbound}" '
            f"{family} daddr {r.to} accept"
        )
        if r.masquerade:
            rules.append(
                f'add rule inet lab masq oifname "{r.outbound}" {family} daddr {r.to} masquerade'
            )
    run("ip", "netns", "exec", ns.name, "nft", "\n".join(rules))


def down(lab: str, progress: Progress) -> list[str]:
    """Remove everything the lab's record names (networks first, through virtnet)."""
    record = Record.load(lab)
    names = record.namespaces if record else []
    if record is not None and record.ovn_nb:
        from virtnet.lab.ovn import down_ovn

        down_ovn(record, progress)
    if record is not None and record.ovsdb:
        os.environ["VIRTNET_OVSDB"] = record.ovsdb  # networks on the lab's own OVS
    if record is not None and record.host and os.path.exists(f"/run/netns/{record.host}"):
        with (
            contextlib.suppress(Exception),
            Virtnet(record.state_dir, record.run_dir, netns=record.host) as vn,
        ):
            for row in vn.list_networks(inactive=False):
                progress.step(f"network {row.name}: destroying")
                vn.destroy_network(row.name)
    for pid in record.pids if record else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    removed = []
    for name in reversed(names):
        if not os.path.exists(f"/run/netns/{name}"):
            continue
        listed = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for found in listed.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(found), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    if record is not None:
        shutil.rmtree(record.directory, ignore_errors=True)
        if record.ovsdb:
            shutil.rmtree(Path(record.ovsdb.removeprefix("unix:")).parent, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last lab: leave /run as it was
            record.directory.parent.rmdir()
    progress.say(f"  lab {lab}: removed {len(removed)} namespace(s)")
    return removed
