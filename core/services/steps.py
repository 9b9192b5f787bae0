"""Plan steps over the core's services: the building blocks every backend plans with.

A backend returns these from its hooks instead of touching the host; the executor runs them
in the host's namespace, journals their undo records, and tears them down in reverse. Each
step is a small frozen value (so a plan prints well for ``--dry-run``); each undo action is
registered by :mod:`virtnet.services.actions` under a ``core.`` name and is idempotent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virtnet import ownership
from virtnet.errors import Conflict, NotFound, OperationFailed
from virtnet.model.codec import to_dict
from virtnet.model.network import Rate
from virtnet.plan import Step, Undo
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.firewall_rules import NetworkRules
from virtnet.services.guard_rules import PortGuard

if TYPE_CHECKING:
    from virtnet.apply import ApplyContext
    from virtnet.services import Services


#: ``ApplyContext.scratch`` key during a repair: links that had to be made again.
RECREATED = "repair.recreated"


def services(ctx: ApplyContext) -> Services:
    from virtnet.services import Services

    assert isinstance(ctx.services, Services), "steps need the core's services"
    return ctx.services


# --- checks -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequireBridge(Step):
    """Fail unless a bridge virtnet does not own exists (``<forward mode='bridge'/>``)."""

    name: str

    def describe(self) -> str:
        return f"require existing bridge {self.name}"

    def undo(self) -> Undo | None:
        return None

    def check(self, ctx: ApplyContext) -> None:
        kind = services(ctx).netlink.link_kind(self.name)
        if kind is None:
            raise NotFound(f"host bridge {self.name!r} does not exist", subject="network/bridge")
        if kind not in ("bridge", "openvswitch"):
            what = f"a {kind}" if kind else "a device"
            raise Conflict(f"{self.name!r} is {what}, not a bridge", subject="network/bridge")

    def apply(self, ctx: ApplyContext) -> None:
        pass


@dataclass(frozen=True)
class RequireSubnetsFree(Step):
    """Fail if the host already routes into a subnet (an address on a link puts its prefix
    in the routing table, so this finds used addresses too).

    Two FIB lookups per subnet, for its first and last address: constant cost however many
    routes the host has. A more specific route strictly inside the subnet that covers
    neither end is not seen (libvirt's full scan of /proc/net/route would see it).
    """

    subnets: tuple[str, ...]

    def describe(self) -> str:
        return f"check {', '.join(self.subnets)} unused on the host"

    def undo(self) -> Undo | None:
        return None

    def check(self, ctx: ApplyContext) -> None:
        nl = services(ctx).netlink
        for text in self.subnets:
            subnet = ipaddress.ip_network(text)
            for probe in (subnet.network_address, subnet.broadcast_address):
                found = nl.route_covering(str(probe))
                if found is not None:
                    raise Conflict(
                        f"subnet {subnet} is already in use on this host (route {found})",
                        subject="network/ip",
                    )

    def apply(self, ctx: ApplyContext) -> None:
        pass


# --- links --------------------------------------------------------------------------------
def _require_free(ctx: ApplyContext, ifname: str) -> None:
    svc = services(ctx)
    # a port of a network just stopped keeps its name until the reaper deletes it
    if svc.netlink.index(ifname) is not None and (
        not svc.reaper.settle() or svc.netlink.index(ifname) is not None
    ):
        raise Conflict(f"interface {ifname!r} already exists on this host", subject="ifname")


def _delete_undo(ifname: str, bulk: str | None = None) -> Undo:
    args: dict[str, Any] = {"ifname": ifname}
    if bulk:
        args["bulk"] = bulk
    return Undo("core.link.delete", args)


def _bulk_of(master: str | None, bulk: bool, group_of: str | None) -> str | None:
    """The bridge whose link group a port link joins (and whose teardown deletes it)."""
    return master if master and bulk else group_of


def _group(nl: Any, bridge: str | None) -> int | None:
    return nl.port_group(bridge) if bridge else None


def _repair_port_link(
    ctx: ApplyContext,
    ifname: str,
    master: str | None,
    bulk_of: str | None,
    create: Callable[[], None],
) -> None:
    """A guest link that is gone is made again; one that lost its bridge (the bridge was
    deleted and re-made) joins it again, keeping the guest's end and its open file, and the
    re-made bridge's link group (its number follows the new bridge's ifindex)."""
    nl = services(ctx).netlink
    if nl.index(ifname) is None:
        create()
        return
    if master and nl.master_of(ifname) != master:
        nl.enslave(ifname, master)
    group = _group(nl, bulk_of)
    if group is not None:
        nl.set_group(ifname, group)


@dataclass(frozen=True)
class RemovePortsInBulk(Step):
    """Plan it right after the bridge: on stop, the bridge and every port link still in its
    link group go in one kernel request."""

    bridge: str
    #: False for a bridge the kernel does not own (Open vSwitch's local port): only the
    #: ports go in the request, the bridge goes through its own switch.
    include_bridge: bool = True

    def describe(self) -> str:
        return f"on stop: delete the ports of {self.bridge} in one request"

    def undo(self) -> Undo | None:
        return Undo("core.link.delete_group", {"bridge": self.bridge})

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)  # a re-made bridge needs its link group again

    def apply(self, ctx: ApplyContext) -> None:
        if not self.include_bridge:
            return
        # the bridge joins the group too: it then goes in the same request as its ports,
        # and the kernel's ~30 ms of RCU waiting on link deletion is paid once
        nl = services(ctx).netlink
        group = nl.port_group(self.bridge)
        if group is not None:
            nl.set_group(self.bridge, group)


@dataclass(frozen=True)
class CreateBridge(Step):
    name: str
    mac: str | None = None
    mtu: int | None = None
    stp: bool = True
    delay: int = 0

    def describe(self) -> str:
        stp = "on" if self.stp else "off"
        extra = f" mtu {self.mtu}" if self.mtu else ""
        return f"create bridge {self.name} (mac {self.mac}, stp {stp}, delay {self.delay}{extra})"

    def undo(self) -> Undo | None:
        return _delete_undo(self.name)

    def check(self, ctx: ApplyContext) -> None:
        _require_free(ctx, self.name)

    def repair(self, ctx: ApplyContext) -> None:
        if services(ctx).netlink.index(self.name) is None:
            self.apply(ctx)
            ctx.scratch.setdefault(RECREATED, set()).add(self.name)

    def apply(self, ctx: ApplyContext) -> None:
        nl = services(ctx).netlink
        nl.create_bridge(
            self.name, mac=self.mac, mtu=self.mtu, stp=self.stp, delay=self.delay, label=ctx.owner
        )  # with a bound on learned MACs (fdb_limit)


@dataclass(frozen=True)
class JoinFirewalldZone(Step):
    """``<bridge zone=...>``: the bridge joins that firewalld zone while the network runs."""

    bridge: str
    zone: str

    def describe(self) -> str:
        return f"put {self.bridge} in firewalld zone {self.zone}"

    def undo(self) -> Undo | None:
        return Undo("core.firewalld.leave", {"bridge": self.bridge, "zone": self.zone})

    def apply(self, ctx: ApplyContext) -> None:
        from virtnet.services import firewalld

        firewalld.join_zone(self.bridge, self.zone)


@dataclass(frozen=True)
class PinGuestMac(Step):
    """A guarded guest's MAC as a static entry on its bridge port: not counted against the
    bridge's learning limit, so a flooding guest elsewhere cannot make the bridge forget it
    and flood its traffic to every port. It goes with the port's link."""

    ifname: str
    mac: str

    def describe(self) -> str:
        return f"pin {self.mac} to bridge port {self.ifname} (static entry)"

    def undo(self) -> Undo | None:
        return None

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).netlink.pin_mac(self.ifname, self.mac)


@dataclass(frozen=True)
class AddAddress(Step):
    """An address on a link the same plan created (it goes away with the link)."""

    ifname: str
    address: str
    prefixlen: int

    def describe(self) -> str:
        return f"add address {self.address}/{self.prefixlen} to {self.ifname}"

    def undo(self) -> Undo | None:
        return None

    def repair(self, ctx: ApplyContext) -> None:
        with contextlib.suppress(Conflict):  # already there
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).netlink.add_address(self.ifname, self.address, self.prefixlen)


@dataclass(frozen=True)
class SetUp(Step):
    ifname: str

    def describe(self) -> str:
        return f"set {self.ifname} up"

    def undo(self) -> Undo | None:
        return None

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).netlink.set_up(self.ifname)


@dataclass(frozen=True)
class AddRoute(Step):
    dst: str
    gateway: str
    metric: int | None = None

    def describe(self) -> str:
        return f"add route {self.dst} via {self.gateway}"

    def undo(self) -> Undo | None:
        return Undo("core.route.delete", {"dst": self.dst, "gateway": self.gateway})

    def repair(self, ctx: ApplyContext) -> None:
        with contextlib.suppress(Conflict):  # already there
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).netlink.add_route(self.dst, self.gateway, self.metric)


@dataclass(frozen=True)
class EnableForwarding(Step):
    """Turn on IP forwarding in the host's namespace, as libvirt does for nat and route.

    Not undone on stop: other networks or the host's own setup may rely on it (libvirt
    never turns it off either).
    """

    ipv4: bool = True
    ipv6: bool = False

    def describe(self) -> str:
        families = [f for f, on in (("IPv4", self.ipv4), ("IPv6", self.ipv6)) if on]
        return f"enable {' and '.join(families)} forwarding"

    def undo(self) -> Undo | None:
        return None

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        def write() -> None:
            if self.ipv4:
                Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
            if self.ipv6:
                Path("/proc/sys/net/ipv6/conf/all/forwarding").write_text("1")

        write()


@dataclass(frozen=True)
class CreateTap(Step):
    """A persistent tap for a VM monitor to open by name, enslaved to ``master``."""

    ifname: str
    master: str | None
    mac: str | None = None  # the host side's MAC (libvirt: the guest's with 0xfe first)
    owner_uid: int | None = None
    mtu: int | None = None
    bulk: bool = False  # the bridge's plan has RemovePortsInBulk: join its ports' link group
    #: Join this bridge's link group though it is not the link's master (Open vSwitch's
    #: ports have no kernel master); its plan has ``RemovePortsInBulk(include_bridge=False)``.
    group_of: str | None = None

    def describe(self) -> str:
        owner = f", owner uid {self.owner_uid}" if self.owner_uid is not None else ""
        return f"create tap {self.ifname} on {self.master or self.group_of}{owner}"

    def undo(self) -> Undo | None:
        return _delete_undo(self.ifname, _bulk_of(self.master, self.bulk, self.group_of))

    def check(self, ctx: ApplyContext) -> None:
        _require_free(ctx, self.ifname)

    def repair(self, ctx: ApplyContext) -> None:
        bulk_of = _bulk_of(self.master, self.bulk, self.group_of)
        _repair_port_link(ctx, self.ifname, self.master, bulk_of, lambda: self.apply(ctx))

    def apply(self, ctx: ApplyContext) -> None:
        nl = services(ctx).netlink
        nl.create_tap(
            self.ifname,
            master=self.master,
            mac=self.mac,
            owner_uid=self.owner_uid,
            mtu=self.mtu,
            group=_group(nl, _bulk_of(self.master, self.bulk, self.group_of)),
            label=ctx.owner,
        )


@dataclass(frozen=True)
class CreateVeth(Step):
    """A veth pair: ``ifname`` on ``master``, the peer born in the guest's namespace with its
    final name and MAC, and up; plan a ``SetUp(ifname)`` last, once guards are in place."""

    ifname: str
    master: str | None
    peer_ifname: str
    peer_netns: str
    peer_mac: str | None = None
    mtu: int | None = None
    bulk: bool = False  # the bridge's plan has RemovePortsInBulk: join its ports' link group
    peer_tx_checksum: bool = True  # False: the guest computes checksums (OVS userspace)
    group_of: str | None = None  # as CreateTap's

    def describe(self) -> str:
        return (
            f"create veth {self.ifname} on {self.master}, peer {self.peer_ifname} "
            f"in namespace {self.peer_netns}"
        )

    def undo(self) -> Undo | None:
        undo = _delete_undo(self.ifname, _bulk_of(self.master, self.bulk, self.group_of))
        undo.args["peer_netns"] = self.peer_netns  # its guest end retires there (see actions)
        return undo

    def check(self, ctx: ApplyContext) -> None:
        _require_free(ctx, self.ifname)
        from virtnet.host import require_netns

        require_netns(self.peer_netns, "port/netns")

    def repair(self, ctx: ApplyContext) -> None:
        bulk_of = _bulk_of(self.master, self.bulk, self.group_of)
        _repair_port_link(ctx, self.ifname, self.master, bulk_of, lambda: self.apply(ctx))

    def apply(self, ctx: ApplyContext) -> None:
        from virtnet.services.netlink import in_namespace_raw, set_tx_checksum

        nl = services(ctx).netlink
        nl.create_veth(
            self.ifname,
            master=self.master,
            peer_ifname=self.peer_ifname,
            peer_netns=self.peer_netns,
            peer_mac=self.peer_mac,
            mtu=self.mtu,
            group=_group(nl, _bulk_of(self.master, self.bulk, self.group_of)),
            label=ctx.owner,
        )

        # the guest's end was born up (Rtnl.create_veth); ours stays down (no frame reaches
        # the bridge) until the plan's last step
        if not self.peer_tx_checksum:
            in_namespace_raw(self.peer_netns, lambda _: set_tx_checksum(self.peer_ifname, False))


@dataclass(frozen=True)
class SetPortIsolated(Step):
    ifname: str
    isolated: bool = True

    def describe(self) -> str:
        return f"set bridge port {self.ifname} isolated {'on' if self.isolated else 'off'}"

    def undo(self) -> Undo | None:
        return None

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).netlink.set_bridge_port(self.ifname, isolated=self.isolated)


# --- firewall -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddNetworkFirewall(Step):
    """The network's nftables rules (``rules`` None: none, as in open mode), in the same
    transaction as the shared anti-spoofing table its ports will use."""

    rules: NetworkRules | None

    def describe(self) -> str:
        if self.rules is None:
            return "add no nftables rules (open); ensure the anti-spoofing table"
        return f"add nftables rules of {self.rules.mode.value} network on {self.rules.bridge}"

    def undo(self) -> Undo | None:
        if self.rules is None:
            return None
        return Undo("core.firewall.network.remove", {"rules": to_dict(self.rules)})

    def repair(self, ctx: ApplyContext) -> None:
        firewall = services(ctx).firewall
        if self.rules is None:
            self.apply(ctx)  # the guard table only (idempotent)
        elif firewall.network_drift(self.rules):
            firewall.repair_network(self.rules)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).firewall.add_network(self.rules)


@dataclass(frozen=True)
class GuardPort(Step):
    """Anti-spoofing on a Linux bridge: only the port's MAC, and its own addresses, get in
    (:mod:`virtnet.services.guard_rules`).

    ``leased``: addresses the port's MAC already leased (a re-plug). ``leases`` is the
    network's dnsmasq lease file: on unplug, the addresses the port leased since are removed
    from the lease sets too.
    """

    guard: PortGuard
    leases: str | None = None
    leased: tuple[str, ...] = ()

    def describe(self) -> str:
        allowed = ", ".join(self.guard.ips + self.leased) or "addresses from DHCP"
        return f"guard port {self.guard.ifname}: source MAC {self.guard.mac}, IP {allowed}"

    def undo(self) -> Undo | None:
        return Undo(
            "core.firewall.port.remove", {"guard": to_dict(self.guard), "leases": self.leases}
        )

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)  # adding set elements that exist is a no-op

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).firewall.add_port_guard(self.guard, self.leased)


@dataclass(frozen=True)
class JoinNetworkFirewall(Step):
    """A guest link of a network without a bridge (a routed, point-to-point backend) joins
    the network's firewall: what the bridge's elements do for a bridged network. ``rules``
    are the network's (``network_rules(..., prefix=True)``, as its start added): what its
    mode forwards in and out of the link; without them the link only joins the dispatch
    (its guests reach each other and the host, nothing beyond)."""

    key: str  # NetworkRules.key: the network's uuid without dashes
    ifname: str
    rules: NetworkRules | None = None

    def describe(self) -> str:
        return f"route {self.ifname} through the network's firewall"

    def undo(self) -> Undo | None:
        return Undo(
            "core.firewall.link.leave",
            {"ifname": self.ifname, "rules": to_dict(self.rules) if self.rules else None},
        )

    def repair(self, ctx: ApplyContext) -> None:
        with contextlib.suppress(OperationFailed):  # its entries are there already
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).firewall.join_link(self.key, self.ifname, self.rules)


@dataclass(frozen=True)
class GuardHostSide(Step):
    """A port's facts on the host, for every backend: a guarded port's DHCP requests must
    carry its own MAC; an isolated port gets no routed hairpin through the host to the
    network's other ports (:func:`virtnet.services.guard_rules.host_guard_changes`)."""

    mac: str
    guarded: bool
    isolated: bool

    def describe(self) -> str:
        what = [w for w, on in (("DHCP as itself only", self.guarded),
                                ("no hairpin through the host", self.isolated)) if on]  # fmt: skip
        return f"host guard for {self.mac}: {', '.join(what)}"

    def undo(self) -> Undo | None:
        return Undo(
            "core.firewall.host.remove",
            {"mac": self.mac, "guarded": self.guarded, "isolated": self.isolated},
        )

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).firewall.add_host_guard(self.mac, self.guarded, self.isolated)


@dataclass(frozen=True)
class ReleaseSharedTables(Step):
    """Nothing on start; on stop (placed first, its undo runs last) delete virtnet's shared
    nftables tables if no other network or port uses them any more."""

    def describe(self) -> str:
        return "on stop: remove virtnet's nftables tables once unused"

    def undo(self) -> Undo | None:
        return Undo("core.firewall.release")

    def apply(self, ctx: ApplyContext) -> None:
        pass


# --- dnsmasq ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartDnsmasq(Step):
    files: DnsmasqFiles
    conf: str
    hosts: str
    addn_hosts: str
    script: str  # the lease script (virtnet.services.dnsmasq.lease_script)

    def describe(self) -> str:
        if self.files.member is not None:
            return f"join the dnsmasq shared under {self.files.directory}"
        return f"start dnsmasq with {self.files.conf}"

    def undo(self) -> Undo | None:
        return Undo("core.dnsmasq.stop", self.files.as_dict())

    def repair(self, ctx: ApplyContext) -> None:
        dnsmasq = services(ctx).dnsmasq
        if self.files.member is not None:  # a shared dnsmasq: restarted with its members
            from virtnet.services.dnsmasq_group import DnsmasqGroup

            recreated = bool(ctx.scratch.get(RECREATED))
            group = DnsmasqGroup(dnsmasq)
            group.ensure(self.files, self.conf, self.hosts, self.script, force=recreated)
            return
        if ctx.scratch.get(RECREATED):
            dnsmasq.stop(self.files)  # its DHCP socket knew the old link (by ifindex)
        if dnsmasq.pid(self.files) is None:
            self.apply(ctx)  # the lease file is kept: clients keep their addresses

    def apply(self, ctx: ApplyContext) -> None:
        dnsmasq = services(ctx).dnsmasq
        if self.files.member is not None:
            from virtnet.services.dnsmasq_group import DnsmasqGroup

            DnsmasqGroup(dnsmasq).join(self.files, self.conf, self.hosts, self.script)
            return
        dnsmasq.write_files(self.files, self.conf, self.hosts, self.addn_hosts, self.script)
        proc = dnsmasq.spawn(self.files)
        # dnsmasq starts up while the plan goes on (the firewall); the plan waits at its end
        ctx.completions.append(lambda: dnsmasq.finish_start(proc, self.files))


# --- traffic control --------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeLink(Step):
    """``inbound`` shapes what leaves ``ifname`` (towards the guest or network), ``outbound``
    what arrives on it, through the ifb ``ifb``."""

    ifname: str
    ifb: str
    inbound: Rate | None = None
    outbound: Rate | None = None

    def describe(self) -> str:
        parts = [
            f"{name} {rate.average} kB/s"
            for name, rate in (("inbound", self.inbound), ("outbound", self.outbound))
            if rate is not None
        ]
        return f"limit {self.ifname}: {', '.join(parts)}"

    def undo(self) -> Undo | None:
        return Undo("core.tc.remove", {"ifname": self.ifname, "ifb": self.ifb})

    def repair(self, ctx: ApplyContext) -> None:
        if not services(ctx).netlink.qdiscs(self.ifname):
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        from virtnet.services import shaping

        nl = services(ctx).netlink
        if self.inbound is not None and (self.inbound.average or self.inbound.peak):
            shaping.shape_egress(nl, self.ifname, self.inbound)
        if self.outbound is not None and (self.outbound.average or self.outbound.peak):
            shaping.shape_ingress(nl, self.ifname, self.ifb, self.outbound, ctx.owner)


# --- direct attachment (macvtap / macvlan) ------------------------------------------------------
@dataclass(frozen=True)
class RequireLinksUp(Step):
    """Fail unless each device exists and is administratively up (direct networks)."""

    names: tuple[str, ...]

    def describe(self) -> str:
        return f"require {', '.join(self.names)} to exist and be up"

    def undo(self) -> Undo | None:
        return None

    def check(self, ctx: ApplyContext) -> None:
        nl = services(ctx).netlink
        for name in self.names:
            if nl.index(name) is None:
                raise NotFound(
                    f"forward device {name!r} does not exist", subject="network/forward/@dev"
                )
            if not nl.is_up(name):
                raise Conflict(f"forward device {name!r} is down", subject="network/forward/@dev")

    def apply(self, ctx: ApplyContext) -> None:
        pass


@dataclass(frozen=True)
class CreateMacvtap(Step):
    """A macvtap for a VM, in the host's namespace, carrying the guest's own MAC."""

    ifname: str
    lower: str
    mode: str  # bridge | private | vepa | passthru
    mac: str

    def describe(self) -> str:
        return f"create macvtap {self.ifname} on {self.lower} (mode {self.mode}, mac {self.mac})"

    def undo(self) -> Undo | None:
        return _delete_undo(self.ifname)

    def check(self, ctx: ApplyContext) -> None:
        _require_free(ctx, self.ifname)

    def repair(self, ctx: ApplyContext) -> None:
        if services(ctx).netlink.index(self.ifname) is None:
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        nl = services(ctx).netlink
        nl.create_macvtap(
            self.ifname, lower=self.lower, mode=self.mode, mac=self.mac, label=ctx.owner
        )
        nl.set_up(self.ifname)


@dataclass(frozen=True)
class TapDeviceNode(Step):
    """A private character-device node for a macvtap, for a VM monitor to open.

    ``/dev/tapN`` is named after the ifindex, and every namespace numbers its own links, so
    two namespaces can each have a macvtap 4 and ``/dev/tap4`` serves only one of them. The
    device number is read from the link's own namespace (sysfs as ``ip netns exec`` mounts
    it) and a node made at ``path``, owned by ``owner_uid``.
    """

    ifname: str
    path: str
    owner_uid: int | None = None

    def describe(self) -> str:
        return f"make device node {self.path} for macvtap {self.ifname}"

    def undo(self) -> Undo | None:
        return Undo("core.path.remove", {"path": self.path})

    def check(self, ctx: ApplyContext) -> None:
        if Path(self.path).exists() or Path(self.path).is_symlink():
            raise Conflict(f"{self.path} already exists", subject="port/device")

    def apply(self, ctx: ApplyContext) -> None:
        import glob
        import os
        import subprocess

        pattern = f"/sys/class/net/{self.ifname}/macvtap/tap*/dev"
        netns = ctx.host.netns
        if netns:
            found = subprocess.run(
                ["ip", "netns", "exec", netns, "sh", "-c", f"cat {pattern}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            text = found.stdout.strip()
        else:
            paths = glob.glob(pattern)
            text = Path(paths[0]).read_text().strip() if paths else ""
        if ":" not in text:
            raise OperationFailed(f"cannot find the character device of macvtap {self.ifname}")
        major, minor = (int(x) for x in text.split(":"))
        node = Path(self.path)
        node.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        if self.owner_uid is not None:
            os.chown(node, self.owner_uid, -1)


@dataclass(frozen=True)
class CreateMacvlan(Step):
    """A macvlan for a container, born in its namespace with its final name and MAC, up."""

    ifname: str
    lower: str
    mode: str
    mac: str
    netns: str

    def describe(self) -> str:
        return (
            f"create macvlan {self.ifname} on {self.lower} (mode {self.mode}) in namespace "
            f"{self.netns}"
        )

    def undo(self) -> Undo | None:
        return Undo("core.link.delete_in_netns", {"netns": self.netns, "ifname": self.ifname})

    def check(self, ctx: ApplyContext) -> None:
        from virtnet.host import require_netns

        require_netns(self.netns, "port/netns")

    def repair(self, ctx: ApplyContext) -> None:
        if services(ctx).netlink.index(self.ifname) is None:
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        from virtnet.services.netlink import Netlink, in_namespace

        services(ctx).netlink.create_macvlan(
            self.ifname,
            lower=self.lower,
            mode=self.mode,
            mac=self.mac,
            netns=self.netns,
            labelled=True,
        )

        def guest_side(guest: Netlink) -> None:
            guest.set_label(self.ifname, ctx.owner)
            guest.set_up(self.ifname)

        in_namespace(self.netns, guest_side)


# --- Open vSwitch -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutOfHostStack(Step):
    """Keep the host's IP stack off a port's host-side link.

    Open vSwitch's userspace datapath reads a port with AF_PACKET but does not take the link
    away from the kernel, as a Linux bridge (or OVS's kernel datapath) does. The host would
    then answer a guest's ARP for the host's own address on the port link itself, and the
    guest's packets would reach the host through the wrong interface (bypassing rules keyed
    on the bridge's). No ARP and no IPv6 on that link prevents it.
    """

    ifname: str

    def describe(self) -> str:
        return f"keep the host's IP stack off {self.ifname} (no ARP, no IPv6)"

    def undo(self) -> Undo | None:
        return None

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).netlink.set_noarp(self.ifname)
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{self.ifname}/disable_ipv6").write_text("1")


@dataclass(frozen=True)
class RequireOvsBridge(Step):
    """Fail unless an Open vSwitch bridge virtnet does not own exists."""

    name: str

    def describe(self) -> str:
        return f"require existing Open vSwitch bridge {self.name}"

    def undo(self) -> Undo | None:
        return None

    def check(self, ctx: ApplyContext) -> None:
        if services(ctx).ovsdb.bridge(self.name) is None:
            raise NotFound(
                f"Open vSwitch bridge {self.name!r} does not exist", subject="network/bridge"
            )

    def apply(self, ctx: ApplyContext) -> None:
        pass


@dataclass(frozen=True)
class CreateOvsBridge(Step):
    """An OVS bridge with its local (internal) port, which the host addresses like a Linux
    bridge; ``datapath_type`` netdev is the userspace datapath (no kernel module needed)."""

    name: str
    datapath_type: str
    network_uuid: str
    mtu: int | None = None
    mac: str | None = None

    def describe(self) -> str:
        return (
            f"create Open vSwitch bridge {self.name} (datapath {self.datapath_type}, "
            f"mac {self.mac})"
        )

    def undo(self) -> Undo | None:
        return Undo("core.ovs.bridge.delete", {"name": self.name})

    def check(self, ctx: ApplyContext) -> None:
        if services(ctx).ovsdb.bridge(self.name) is not None:
            raise Conflict(
                f"Open vSwitch bridge {self.name!r} already exists", subject="network/bridge"
            )
        _require_free(ctx, self.name)

    def repair(self, ctx: ApplyContext) -> None:
        if services(ctx).ovsdb.bridge(self.name) is None:
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        ids = {"virtnet-network": self.network_uuid}
        if ctx.owner:
            ids[ownership.OVS_OWNER_KEY] = ctx.owner
        services(ctx).ovsdb.create_bridge(self.name, self.datapath_type, ids, self.mtu, self.mac)


@dataclass(frozen=True)
class AddOvsPort(Step):
    """A guest link as a port of an OVS bridge, with its VLAN settings and the external_ids
    OVN, Neutron agents and nova expect (iface-id, attached-mac, iface-status, vm-uuid)."""

    bridge: str
    ifname: str
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: str | None = None
    external_ids: tuple[tuple[str, str], ...] = ()
    protected: bool = False  # OVS "protected" ports never forward to one another: isolation

    def describe(self) -> str:
        vlan = f", tag {self.tag}" if self.tag is not None else ""
        vlan += ", isolated" if self.protected else ""
        vlan += f", trunks {','.join(map(str, self.trunks))}" if self.trunks else ""
        return f"add {self.ifname} to Open vSwitch bridge {self.bridge}{vlan}"

    def undo(self) -> Undo | None:
        return Undo("core.ovs.port.delete", {"bridge": self.bridge, "name": self.ifname})

    def check(self, ctx: ApplyContext) -> None:
        if services(ctx).ovsdb.port(self.ifname) is not None:
            raise Conflict(f"Open vSwitch already has a port {self.ifname!r}", subject="port")

    def repair(self, ctx: ApplyContext) -> None:
        if services(ctx).ovsdb.port(self.ifname) is None:
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        ids = dict(self.external_ids)
        if ctx.owner:
            ids[ownership.OVS_OWNER_KEY] = ctx.owner
        services(ctx).ovsdb.add_port(
            self.bridge,
            self.ifname,
            tag=self.tag,
            trunks=list(self.trunks),
            vlan_mode=self.vlan_mode,
            external_ids=ids,
            protected=self.protected,
        )


@dataclass(frozen=True)
class AwaitOvsInterface(Step):
    """Wait until ovs-vswitchd has opened the port's link, before the link goes up.

    On the userspace datapath vswitchd turns promiscuous mode on by writing back the whole
    flag word it read when it opened the link (``SIOCSIFFLAGS``): a link set up in between
    went down again, for good, and its guest never got a DHCP answer (the seed lab's OVS
    flake, 1 run in 10). Guard rules go in first, so the wait overlaps with them; a link that
    vswitchd could not open fails the plug with vswitchd's reason instead of a silent port.
    """

    ifname: str

    def describe(self) -> str:
        return f"wait for Open vSwitch to open {self.ifname}"

    def undo(self) -> Undo | None:
        return None

    def repair(self, ctx: ApplyContext) -> None:
        """A link already up has nothing to lose (vswitchd reads it up); waiting for each
        port of a network whose Open vSwitch is down would hold the daemon for seconds."""
        if not services(ctx).netlink.is_up(self.ifname):
            self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        services(ctx).ovsdb.wait_interface(self.ifname)


@dataclass(frozen=True)
class GuardOvsPort(Step):
    """Anti-spoofing on an OVS port with OpenFlow rules (see :mod:`virtnet.services.openflow`):
    only the port's MAC, and its reserved or leased addresses, get through."""

    bridge: str
    ifname: str
    mac: str
    ips: tuple[str, ...] = ()

    @property
    def cookie(self) -> int:
        return ownership.cookie(int(self.mac.replace(":", ""), 16))

    def describe(self) -> str:
        allowed = ", ".join(self.ips) or "addresses from DHCP"
        return f"guard OVS port {self.ifname}: source MAC {self.mac}, IP {allowed}"

    def undo(self) -> Undo | None:
        return Undo(
            "core.ovs.guard.remove",
            {"bridge": self.bridge, "cookie": self.cookie},
        )

    def repair(self, ctx: ApplyContext) -> None:
        self.apply(ctx)

    def apply(self, ctx: ApplyContext) -> None:
        from virtnet.services import openflow

        ofport = services(ctx).ovsdb.ofport(self.ifname)
        openflow.add_flows(
            self.bridge, openflow.guard_flows(self.cookie, ofport, self.mac, self.ips)
        )
