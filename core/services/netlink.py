"""Links, addresses, routes and bridge ports over netlink (pyroute2), in one namespace.

One :class:`Netlink` keeps one rtnetlink socket for the namespace it was opened in (opening a
socket costs milliseconds; a request costs tens of microseconds). Every method does one
kernel request where the kernel allows it: a veth is created with its master, its peer's
namespace, name and MAC in a single ``RTM_NEWLINK``. pyroute2 is imported here and nowhere
else in the core, so commands that do not touch the kernel never pay for it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from virtnet.errors import Conflict, NotFound, OperationFailed
from virtnet.ownership import PREFIX, ROUTE_PROTOCOL, owns
from virtnet.services.rtnl import LinkFacts, Rtnl

T = TypeVar("T")
log = logging.getLogger(__name__)

IFF_NOARP = 0x80
PORT_GROUP_BASE = 0x76740000  # link groups of guest ports: base + the bridge's ifindex
#: The link group a link virtnet creates is born in, until its label is on. The kernel takes
#: an alias only in a second request after the creation (``RTM_NEWLINK`` ignores
#: ``IFLA_IFALIAS``) but takes a group in the first; a process killed between the two leaves
#: an unlabelled link in this group, which the undo its journal recorded may still delete.
BIRTH_GROUP = 0x766E0001
#: The link group of retired links (:meth:`Netlink.retire`): down, detached, renamed, waiting
#: for :class:`~virtnet.services.reaper.Reaper` to delete the whole group in one request.
RETIRED_GROUP = 0x766E0002
#: A chunk of a larger group a reaper is deleting (:func:`delete_groups`): its links were
#: checked, and go with the next request; a process killed meanwhile leaves them labelled,
#: for ``virtnet gc``.
REAPING_GROUP = 0x766E0003
#: Links per deletion request, for a group of more (:func:`delete_groups`).
REAP_CHUNK = 64
RETIRED_PREFIX = "vnr"  # a retired link's name: this and its ifindex in hex
#: Kinds of link a port can retire: nothing of theirs is visible elsewhere under its name (a
#: veth's other end is in the guest's namespace, and must be gone when the unplug returns).
RETIRABLE_KINDS = frozenset({"tun", "macvtap"})


def _iproute() -> Any:
    from pyroute2 import IPRoute  # slow import (~250 ms): only when the kernel is touched

    return IPRoute()


def _code(exc: BaseException) -> int | None:
    return getattr(exc, "code", None)


def _create_error(exc: BaseException, ifname: str, what: str, master: object) -> Exception:
    """The one-line error for a link that could not be made (pyroute2's or rtnl's failure)."""
    if _code(exc) == errno.EEXIST:
        return Conflict(f"interface {ifname!r} already exists", subject=what)
    if _code(exc) == errno.EBUSY and what in ("macvtap", "macvlan"):
        return Conflict(
            f"cannot create {what} {ifname!r}: its device is busy (passthrough in use, "
            "or a mode that cannot share it)"
        )
    if _code(exc) == errno.EXFULL:
        return _enslave_error(exc, ifname, master)
    if _code(exc) == errno.EOPNOTSUPP:
        return OperationFailed(f"cannot create {what} {ifname!r}: this kernel lacks {what} support")
    return OperationFailed(f"cannot create {what} {ifname!r}: {exc}")


def _enslave_error(exc: BaseException, ifname: str, master: object) -> Exception:
    if _code(exc) == errno.EXFULL:
        return Conflict(
            f"bridge {master} is full: a Linux bridge takes at most 1024 ports", subject="port"
        )
    return OperationFailed(f"cannot attach {ifname} to {master}: {exc}")


class Netlink:
    """rtnetlink requests in the namespace of the thread that created this object."""

    def __init__(self) -> None:
        self.ipr = _iproute()
        self.rtnl = Rtnl()  # the per-port hot path: plug, unplug (see its module)

    def close(self) -> None:
        self.ipr.close()
        self.rtnl.close()

    # lookups --------------------------------------------------------------------------------
    def index(self, ifname: str) -> int | None:
        """The link's index, by name, in this thread's namespace (one ioctl; no decoding)."""
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            return None

    def require(self, ifname: str, what: str = "interface") -> int:
        idx = self.index(ifname)
        if idx is None:
            raise NotFound(f"{what} {ifname!r} does not exist")
        return idx

    def link(self, ifname: str) -> Any | None:
        """One link by name: a single kernel lookup (``link_lookup`` would dump every link)."""
        try:
            return self.ipr.link("get", ifname=ifname)[0]
        except Exception as exc:
            if _code(exc) in (errno.ENODEV, errno.EINVAL):
                return None
            raise

    def link_kind(self, ifname: str) -> str | None:
        return self.link_state(ifname)[0]

    def link_state(self, ifname: str) -> tuple[str | None, bool]:
        """(kind, administratively up) in one lookup; (None, False) if there is no such link
        (a link without a kind, e.g. a physical NIC, gives ``""``)."""
        link = self.rtnl.link(ifname)
        if link is None:
            return None, False
        return link.kind or "", link.up

    def master_of(self, ifname: str) -> str | None:
        link = self.rtnl.link(ifname)
        if link is None or not link.master:
            return None
        return socket.if_indextoname(link.master)

    def tap_closed(self, ifname: str) -> bool:
        """No process holds the tap open (it is up without carrier), or it is gone. A tap
        set down says nothing either way (the kernel reports carrier of running links only)."""
        link = self.rtnl.link(ifname)
        return link is None or (link.up and not link.carrier)

    def open_tap(self, ifname: str, vnet_hdr: bool) -> int:
        """A file descriptor of the existing tap ``ifname`` (what QEMU's ``-netdev tap,fd=``
        takes). Only a tap: ``TUNSETIFF`` would make a new one under a free name, so the link
        must be there, a tun device, before and the same one after."""
        before = self.rtnl.link(ifname)
        if before is None or before.kind != "tun":
            raise NotFound(f"{ifname} is not a tap here")
        fd = open_tap_fd(ifname, vnet_hdr)
        after = self.rtnl.link(ifname)
        if after is None or after.index != before.index:
            os.close(fd)
            raise Conflict(f"tap {ifname} was replaced while it was opened")
        return fd

    def is_up(self, ifname: str) -> bool:
        link = self.rtnl.link(ifname)
        return link is not None and link.up

    def route_covering(self, address: str) -> str | None:
        """The prefix of the route the kernel would use for ``address`` (a FIB lookup, so
        O(1) however many routes exist), or None when only a default route or none covers it.
        """
        return self.rtnl.route_covering(address)

    # links ----------------------------------------------------------------------------------
    def create_bridge(
        self,
        ifname: str,
        *,
        mac: str | None,
        mtu: int | None,
        stp: bool,
        delay: int,
        label: str | None = None,
    ) -> None:
        """A bridge with its STP settings and :data:`fdb_limit.DEFAULT_MAX_LEARNED` (a bound on
        the MACs it learns: guests with --no-spoof-check could send from millions), in one
        request; with a ``label``, born in :data:`BIRTH_GROUP`, then labelled."""
        from virtnet.services.fdb_limit import DEFAULT_MAX_LEARNED

        try:
            self.rtnl.create_bridge(
                ifname,
                stp=stp,
                # the kernel counts in centiseconds; with STP on it never goes below 2 s
                forward_delay=delay * 100,
                max_learned=DEFAULT_MAX_LEARNED,
                mac=mac,
                mtu=mtu,
                group=BIRTH_GROUP if label else None,
            )
        except OSError as exc:
            raise _create_error(exc, ifname, "bridge", None) from None
        if label:
            self.set_label(ifname, label, None)

    def create_tap(
        self,
        ifname: str,
        *,
        master: str | None,
        mac: str | None,
        owner_uid: int | None,
        mtu: int | None = None,
        group: int | None = None,
        label: str | None = None,
    ) -> None:
        """A persistent tap (no packet info, vnet headers: what QEMU asks for).

        It is configured (label, MAC, MTU, group, master) while the creating file is still
        open and made persistent last: a process killed before that leaves nothing, since the
        kernel removes a tap that is not persistent when its last file closes."""
        master_index = self.require(master, "bridge") if master else None

        def configure() -> None:
            if label or mac or mtu or group is not None or master_index:
                try:
                    self.rtnl.set_link(
                        self.require(ifname),
                        alias=label or None,
                        mac=mac or None,
                        mtu=mtu or None,
                        group=group,
                        master=master_index,
                    )
                except OSError as exc:
                    raise _enslave_error(exc, ifname, master) from None

        create_tap_exclusive(ifname, owner_uid, configure)

    def create_veth(
        self,
        ifname: str,
        *,
        master: str | None,
        peer_ifname: str,
        peer_netns: str | None,
        peer_mac: str | None,
        mtu: int | None = None,
        group: int | None = None,
        label: str | None = None,
    ) -> None:
        """A veth pair in one request: our end enslaved, the peer born in the guest namespace."""
        from virtnet.host import open_netns

        fd = open_netns(peer_netns, "port/netns") if peer_netns else None
        master_index = self.require(master, "bridge") if master else None
        try:
            self.rtnl.create_veth(
                ifname,
                peer_ifname=peer_ifname,
                peer_netns_fd=fd,
                peer_mac=peer_mac,
                master=master_index if fd is None else None,  # (else below, with the label)
                mtu=mtu,
                group=BIRTH_GROUP if label else group,
            )
        except OSError as exc:
            raise _create_error(exc, ifname, "veth", master) from None
        finally:
            if fd is not None:
                os.close(fd)
        if fd is not None and master_index is not None:  # our end was the pair's peer
            self.rtnl.set_link(
                self.require(ifname),
                master=master_index,
                alias=label or None,
                group=(group or 0) if label else None,
            )
        elif label:
            self.set_label(ifname, label, group)

    def create_macvtap(
        self, ifname: str, *, lower: str, mode: str, mac: str | None, label: str | None = None
    ) -> None:
        """A macvtap on ``lower`` (modes: bridge, private, vepa, passthru)."""
        kwargs: dict[str, Any] = {
            "kind": "macvtap",
            "link": self.require(lower, "forward device"),
            "macvtap_mode": mode,
        }
        if mac:
            kwargs["address"] = mac
        self._create(ifname, "macvtap", label=label, **kwargs)

    def create_macvlan(
        self,
        ifname: str,
        *,
        lower: str,
        mode: str,
        mac: str | None,
        netns: str | None,
        labelled: bool = False,
    ) -> None:
        """A macvlan on ``lower``, born in ``netns`` (a guest's) with its final name; in
        :data:`BIRTH_GROUP` when ``labelled`` (the caller labels it there)."""
        kwargs: dict[str, Any] = {
            "kind": "macvlan",
            "link": self.require(lower, "forward device"),
            "macvlan_mode": mode,
        }
        if mac:
            kwargs["address"] = mac
        if netns:
            kwargs["net_ns_fd"] = netns
        if labelled:
            kwargs["group"] = BIRTH_GROUP
        self._create(ifname, "macvlan", **kwargs)

    def create_ifb(self, ifname: str, label: str | None = None) -> None:
        self._create(ifname, "ifb", label=label, kind="ifb")

    # ownership ------------------------------------------------------------------------------
    def set_label(self, ifname: str, label: str | None, group: int | None = None) -> None:
        """Put virtnet's ownership label (:mod:`virtnet.ownership`) on a link it just made,
        moving it out of :data:`BIRTH_GROUP` into ``group`` (0: none) in the same request."""
        if label:
            self.rtnl.set_link(self.require(ifname), alias=label, group=group or 0)

    def label(self, ifname: str) -> str | None:
        """The alias of ``ifname`` (None if it has none, or is gone)."""
        link = self.rtnl.link(ifname)
        return link.alias if link is not None else None

    def names(self) -> list[str]:
        """Every link's name (one dump)."""
        return [link.name for link in self.rtnl.links()]

    def labelled_links(self) -> dict[str, str]:
        """Every link carrying one of virtnet's labels: name -> label (one dump)."""
        return {
            link.name: link.alias
            for link in self.rtnl.links()
            if link.alias and link.alias.startswith(PREFIX)
        }

    def _create(
        self,
        ifname: str,
        what: str,
        label: str | None = None,
        group: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Create a link; with a ``label``, born in :data:`BIRTH_GROUP` and then labelled
        (and put in ``group``) by a second request."""
        if label:
            kwargs["group"] = BIRTH_GROUP
        elif group is not None:
            kwargs["group"] = group
        try:
            self.ipr.link("add", ifname=ifname, **kwargs)
        except Exception as exc:
            raise _create_error(exc, ifname, what, kwargs.get("master")) from None
        if label:
            self.set_label(ifname, label, group)

    def set_up(self, ifname: str) -> None:
        self.rtnl.set_link(self.require(ifname), up=True)

    def set_noarp(self, ifname: str) -> None:
        """IFF_NOARP: the host never answers ARP on this link (see ``OutOfHostStack``)."""
        self.ipr.link("set", index=self.require(ifname), flags=IFF_NOARP, mask=IFF_NOARP)

    def set_bridge_port(self, ifname: str, *, isolated: bool) -> None:
        self.ipr.brport("set", index=self.require(ifname), isolated=1 if isolated else 0)

    def bridge_port_isolated(self, ifname: str) -> bool:
        msg = self.link(ifname)
        info = msg.get_attr("IFLA_LINKINFO") if msg is not None else None
        data = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
        return bool(data and data.get_attr("IFLA_BRPORT_ISOLATED"))

    def pin_mac(self, ifname: str, mac: str) -> None:
        """A static forwarding entry for ``mac`` on bridge port ``ifname`` (``bridge fdb add
        MAC dev IF master static``: NUD_NOARP, NTF_MASTER)."""
        self.rtnl.add_fdb(self.require(ifname), mac)

    def enslave(self, ifname: str, master: str) -> None:
        self.rtnl.set_link(self.require(ifname), master=self.require(master, "bridge"))

    def port_group(self, bridge: str) -> int | None:
        """The link group of ``bridge``'s ports: derived from its ifindex, so unique per
        namespace for as long as the bridge lives (None if it is gone)."""
        idx = self.index(bridge)
        return None if idx is None else PORT_GROUP_BASE + idx

    def set_group(self, ifname: str, group: int) -> None:
        self.rtnl.set_link(self.require(ifname), group=group)

    def delete(self, ifname: str, owner: str | None) -> bool:
        """Delete a link labelled ``owner``'s; False if it was already gone (undo must be
        idempotent). A link of that name without the label is someone else's: it stays, and
        :class:`~virtnet.errors.Conflict` says so (the undo's problem line)."""
        link = self._owned_link(ifname, owner)
        return link is not None and self._delete_index(link.index)

    def retire(
        self,
        ifname: str,
        owner: str | None,
        group: int | None = RETIRED_GROUP,
        peer_netns: str | None = None,
    ) -> bool:
        """Take a link labelled ``owner``'s out of service now and leave its deletion to a
        reaper (:mod:`virtnet.services.reaper`): False if it was already gone.

        Deleting a link costs ~15 ms in the kernel, retiring it ~1 ms: it goes down (a
        bridge's ports stop forwarding, a guest's frames are dropped), leaves its bridge
        (which forgets its static MAC entries), and is renamed ``vnr<ifindex>`` so its name
        is free again at once, then waits in ``group`` (None: the group it is in, e.g. a
        bridge with its ports). A veth whose other end is in ``peer_netns`` retires too: that
        end, the guest's interface, goes down and takes the retired name there first, so the
        guest's name is free at once as well. A kind that cannot retire
        (:data:`RETIRABLE_KINDS`, bridges and such veths aside), or a name clash, is deleted
        now."""
        link = self._owned_link(ifname, owner)
        if link is None:
            return False
        idx = link.index
        if link.kind == "veth" and peer_netns and group is not None:
            if not self._retire_peer(link, peer_netns):
                return self._delete_index(idx)
        elif link.kind not in RETIRABLE_KINDS and not (link.kind == "bridge" and group is None):
            if group is None:
                raise ValueError(f"only a bridge retires in its own group, not {ifname}")
            return self._delete_index(idx)
        try:  # a name changes only while the link is down
            self.rtnl.set_link(idx, up=False, master=0 if link.master else None)
            self.rtnl.set_link(idx, ifname=f"{RETIRED_PREFIX}{idx:x}", group=group)
        except OSError as exc:
            if _code(exc) == errno.ENODEV:
                return False
            log.warning("cannot retire %s (%s): deleting it now", ifname, exc)
            return self._delete_index(idx)
        return True

    @staticmethod
    def _retire_peer(link: LinkFacts, netns: str) -> bool:
        """Down and rename ``link``'s other end in namespace ``netns``; False if it is not
        there as that (then deleting ``link`` now removes it with it)."""
        from virtnet.host import netns_path

        if not link.peer or not netns_path(netns).exists():
            return False

        def guest_side(rtnl: Rtnl) -> bool:
            peer = rtnl.link(index=link.peer)
            if peer is None or peer.kind != "veth" or peer.peer != link.index:
                return False  # not the other end of this pair: leave it alone
            rtnl.set_link(peer.index, up=False)
            rtnl.set_link(peer.index, ifname=f"{RETIRED_PREFIX}{peer.index:x}")
            return True

        try:
            return in_namespace_raw(netns, guest_side)
        except OSError as exc:
            log.warning("cannot retire the guest end of %s (%s): deleting it now", link.name, exc)
            return False

    def retire_bridge(self, bridge: str, owner: str | None) -> int | None:
        """A network's teardown: the link group of ``bridge``'s ports for a reaper to delete
        (None if the bridge is gone), with the bridge retired in it if it joined it
        (:class:`~virtnet.services.steps.RemovePortsInBulk`): down, so none of its ports
        forwards any more, and renamed, so a network may take its name again at once."""
        link = self.rtnl.link(bridge)
        if link is None:
            return None
        group = PORT_GROUP_BASE + link.index
        if link.group == group:  # not Open vSwitch's, which its switch removes
            self.retire(bridge, owner, group=None)
        return group

    def _owned_link(self, ifname: str, owner: str | None) -> LinkFacts | None:
        link = self.rtnl.link(ifname)
        if link is not None and not owns(owner, link.alias) and not _unlabelled_birth(link):
            raise Conflict(
                f"left {ifname} alone: it is not virtnet's "
                f"({'alias ' + repr(link.alias) if link.alias else 'no ownership label'})",
                subject=ifname,
            )
        return link

    def _delete_index(self, idx: int) -> bool:
        try:
            self.rtnl.delete_link(idx)
        except OSError as exc:
            if _code(exc) == errno.ENODEV:
                return False
            raise
        return True

    # addresses and routes -------------------------------------------------------------------
    def add_address(self, ifname: str, address: str, prefixlen: int) -> None:
        try:
            self.rtnl.add_address(self.require(ifname), address, prefixlen)
        except OSError as exc:
            if _code(exc) == errno.EEXIST:
                raise Conflict(f"{address}/{prefixlen} is already on {ifname}") from None
            raise

    def add_route(self, dst: str, gateway: str, metric: int | None = None) -> None:
        kwargs: dict[str, Any] = {"dst": dst, "gateway": gateway, "proto": ROUTE_PROTOCOL}
        if metric is not None:
            kwargs["priority"] = metric
        try:
            self.ipr.route("add", **kwargs)
        except Exception as exc:
            if _code(exc) == errno.EEXIST:
                raise Conflict(f"a route to {dst} already exists") from None
            raise OperationFailed(f"cannot add route to {dst} via {gateway}: {exc}") from None

    def add_link_route(self, dst: str, ifname: str) -> None:
        """A route to ``dst`` straight through ``ifname`` (no gateway: a point-to-point
        guest link), with virtnet's protocol; it goes when the link goes."""
        try:
            self.ipr.route("add", dst=dst, oif=self.require(ifname), scope=253,
                           proto=ROUTE_PROTOCOL)  # fmt: skip
        except Exception as exc:
            if _code(exc) == errno.EEXIST:
                raise Conflict(f"a route to {dst} already exists") from None
            raise OperationFailed(f"cannot add route to {dst} on {ifname}: {exc}") from None

    def delete_route(self, dst: str, gateway: str) -> None:
        """Only a route virtnet made (its protocol is :data:`~virtnet.ownership.ROUTE_PROTOCOL`;
        the kernel matches it in the request, so an operator's same route stays)."""
        try:
            self.ipr.route("del", dst=dst, gateway=gateway, proto=ROUTE_PROTOCOL)
        except Exception as exc:
            if _code(exc) not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                raise

    # traffic control ------------------------------------------------------------------------
    def tc(self, command: str, kind: str, ifname: str, handle: int = 0, **kwargs: Any) -> None:
        self.ipr.tc(command, kind, self.require(ifname), handle, **kwargs)

    def qdiscs(self, ifname: str) -> list[str]:
        idx = self.index(ifname)
        if idx is None:
            return []
        return [str(m.get_attr("TCA_KIND")) for m in self.ipr.get_qdiscs(index=idx)]


@dataclass(frozen=True)
class Reap:
    """A link group waiting for a reaper (:mod:`virtnet.services.reaper`).

    ``owner``: only links labelled as its (or its ports') go; a link someone else put in the
    group leaves it and stays. ``checked``: the caller checked each link's label as it put it
    in the group (the retired group, which only :meth:`Netlink.retire` fills), so no dump of
    the links is needed for that; ``links``: how many it put there, a dump is needed to
    delete more than :data:`REAP_CHUNK` of them a chunk at a time."""

    owner: str | None = None
    checked: bool = False
    links: int = 0

    def needs_dump(self) -> bool:
        return not self.checked or self.links > REAP_CHUNK


def delete_groups(rtnl: Rtnl, groups: dict[int, Reap]) -> None:
    """Delete the links of several groups after one dump of the links for all of them (1,000
    stopped networks took ~20 s when each group's deletion checked every link of the host).

    The kernel holds its RTNL lock while it unregisters a request's links, and every
    foreground request (a start, a stop, a plug) waits for it: a bridge ~16 ms whether alone
    or with others (5 bridges in one request held it 82 ms, 10 held it 154 ms), a tap
    ~0.12 ms, more than linearly past a few hundred (100 taps held it 12 ms, 1,000 taps
    171 ms, a bridge with its 1,000 ports 367 ms; measured). So each group goes in its own
    requests, a group's links :data:`REAP_CHUNK` at a time with its bridge last: a
    foreground request waits for one chunk at most. The grace periods a deletion also waits
    for (~13 ms) are outside the lock: more requests cost the reaper time, not the host."""
    dumped = {group for group, reap in groups.items() if reap.needs_dump()}
    if dumped:  # a killed reaper's chunk goes first; another's link there leaves it
        groups = {REAPING_GROUP: Reap(), **groups}
        dumped.add(REAPING_GROUP)
    members: dict[int, list[LinkFacts]] = {group: [] for group in groups}
    for link in rtnl.links(dumped) if dumped else []:
        reap = groups[link.group]
        if reap.checked or owns(reap.owner, link.alias):
            members[link.group].append(link)
            continue
        log.warning("keeping %s: not virtnet's", link.name)
        _set_group(rtnl, link.index, 0)
    failure: OSError | None = None
    for group, links in members.items():
        if group in dumped and not links:
            continue  # none there when dumped: what is retired later has its own reap
        try:
            _delete_in_chunks(rtnl, group, links)
        except OSError as exc:
            if failure is None:
                failure = exc
    if failure is not None:
        raise failure


def _delete_in_chunks(rtnl: Rtnl, group: int, links: list[LinkFacts]) -> None:
    """Delete ``group``, whose members are ``links``, a chunk at a time: each chunk moved to
    :data:`REAPING_GROUP` and deleted with it, the bridge and the last chunk with the group
    (a bridge's ports leave it as they go)."""
    ports = sorted(links, key=lambda link: link.kind == "bridge")
    spare = ports[: max(len(ports) - REAP_CHUNK, 0)]
    for start in range(0, len(spare), REAP_CHUNK):
        for link in spare[start : start + REAP_CHUNK]:
            _set_group(rtnl, link.index, REAPING_GROUP)
        _delete_group(rtnl, REAPING_GROUP)
    _delete_group(rtnl, group)


def _set_group(rtnl: Rtnl, index: int, group: int) -> None:
    try:
        rtnl.set_link(index, group=group)
    except OSError as exc:
        if _code(exc) != errno.ENODEV:  # gone meanwhile: nothing to do
            raise


def _delete_group(rtnl: Rtnl, group: int) -> None:
    try:
        rtnl.delete_group(group)
    except OSError as exc:
        if _code(exc) not in (errno.ENODEV, errno.ENOENT):  # none left in it
            raise


def _unlabelled_birth(link: LinkFacts) -> bool:
    """A link virtnet made whose maker was killed before it could label it (the journal
    record being undone names it: it was free when the step began)."""
    return not link.alias and link.group == BIRTH_GROUP


TUNSETIFF, TUNSETPERSIST, TUNSETOWNER = 0x400454CA, 0x400454CB, 0x400454CC
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_TUN_EXCL = 0x0002, 0x1000, 0x4000, 0x8000


def create_tap_exclusive(
    ifname: str, owner_uid: int | None, configure: Callable[[], None] = lambda: None
) -> None:
    """A persistent tap (no packet info, vnet headers: what QEMU asks for), made only if no
    device has the name: ``TUNSETIFF`` on an existing tap would otherwise attach to it and
    succeed (pyroute2 does not pass ``IFF_TUN_EXCL``), and undoing it would delete someone
    else's tap. ``configure`` runs before the tap is made persistent: if it raises, or the
    process dies, the tap goes when the file closes."""
    import fcntl

    flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL
    try:
        fd = tun_fd(ifname, flags)
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.EEXIST, errno.EINVAL, errno.EPERM):
            raise Conflict(f"interface {ifname!r} already exists", subject="tap") from None
        raise OperationFailed(f"cannot create tap {ifname!r}: {exc.strerror}") from None
    try:
        if owner_uid is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner_uid)
        configure()
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def tun_fd(ifname: str, flags: int) -> int:
    """``/dev/net/tun`` bound to tap ``ifname`` with ``flags`` (``TUNSETIFF``): a new tap, or
    a queue of an existing one; the descriptor is closed again if the kernel refuses."""
    import fcntl
    import struct

    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), flags))
    except OSError:
        os.close(fd)
        raise
    return fd


def open_tap_fd(ifname: str, vnet_hdr: bool) -> int:
    """Attach to a persistent tap (a queue of it): the descriptor a VM reads and writes."""
    try:
        return tun_fd(ifname, IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0))
    except OSError as exc:
        raise OperationFailed(f"cannot open tap {ifname}: {exc.strerror}") from None


SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def set_tx_checksum(ifname: str, enabled: bool) -> None:
    """Turn a link's transmit checksum offload on or off (ethtool -K IF tx off), in the
    calling thread's namespace.

    Open vSwitch's userspace datapath reads frames from a veth with AF_PACKET, which sees
    them before the kernel fills offloaded checksums, and forwards them unfilled: TCP and UDP
    between two veth guests then fail their checksums. A guest end that computes its own
    checksums avoids that.
    """
    import array
    import fcntl
    import struct

    value = array.array("B", struct.pack("II", ETHTOOL_STXCSUM, 1 if enabled else 0))
    address, _ = value.buffer_info()
    request = struct.pack("16sP", ifname.encode(), address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCETHTOOL, request)


def in_namespace_raw(netns: str, fn: Callable[[Rtnl], T]) -> T:
    """:func:`in_namespace` with a bare :class:`~virtnet.services.rtnl.Rtnl` (microseconds to
    open, where pyroute2's socket costs milliseconds): for the per-port path."""
    return _on_thread_in(netns, Rtnl, fn)


def in_namespace(netns: str, fn: Callable[[Netlink], T]) -> T:
    """Run ``fn`` with a Netlink opened inside namespace ``netns`` (a guest's), then close it.

    A short-lived thread enters the namespace, so the caller's own namespace never changes.
    """
    return _on_thread_in(netns, Netlink, fn)


S = TypeVar("S", Netlink, Rtnl)


def _on_thread_in(netns: str, open_socket: Callable[[], S], fn: Callable[[S], T]) -> T:
    """``fn(open_socket())`` on a short-lived thread inside ``netns``; the socket is closed."""
    from virtnet.host import enter_netns

    result: list[T] = []
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            enter_netns(netns)
            sock = open_socket()
            try:
                result.append(fn(sock))
            finally:
                sock.close()
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=worker, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
