"""What virtnetd watches, so that it checks a network only when something of it changed.

Checking every network every second costs O(networks) per second whether anything happened
or not. The kernel and the processes say when something happened
(:mod:`virtnet.daemon.kernel_events`):

- **links** (rtnetlink): a network's bridge, a link its journal lists, or a port's link
  deleted or changed -> that network;
- **nftables**: a rule, chain, map entry or table of virtnet's deleted -> the network it
  names; one that names none (a base chain flushed, a table dropped; also every network
  start, which refills the base chains) -> the base chains are checked, and if they are
  gone, every network;
- **dnsmasq** (a pidfd per process): it exited -> its network; a dnsmasq shared by networks
  (:mod:`virtnet.services.dnsmasq_group`) has one pidfd for its group: restarted (a network
  joined or left) -> the next one is watched, no check; gone -> one member is checked, whose
  repair brings the group's dnsmasq back for all;
- **leases** (inotify on each leases file): a lease came or went -> its lease events;
- **/etc/resolv.conf** (inotify on /etc): the host's name servers changed -> the dnsmasqs'
  shared servers file is rewritten and they re-read it.

Open vSwitch's database sends nothing to this thread (its IDL belongs to the service thread),
so networks with OVS objects in their journal are *polled*, each once per interval; the
monitor's slow full pass catches what no event covers (routes, qdiscs, a backend's own
state). What to watch for a network is rebuilt when a lifecycle event names it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from virtnet.api import Virtnet
from virtnet.daemon import kernel_events as ke
from virtnet.events import Event, EventKind
from virtnet.host import netns_path
from virtnet.services.dnsmasq import resolv_conf
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.firewall_rules import TABLE

SETTLE = 0.05  # after a first event, gather the rest of its burst: one check per burst


@dataclass
class _Entry:
    key: str  # the uuid without dashes, as in its chains' names
    links: set[str]
    leases: str | None
    wd: int | None  # the inotify watch of the leases file
    pidfd: int | None  # dnsmasq's
    polled: bool  # has Open vSwitch objects: checked on the timer
    last_poll: float = 0.0
    group: str | None = None  # the directory of the shared dnsmasq that serves it


@dataclass
class _Group:
    """A shared dnsmasq's networks, and the pidfd of its process."""

    members: set[str] = field(default_factory=set)
    pidfd: int | None = None


@dataclass
class Due:
    """Networks to check, and networks whose leases file changed."""

    checks: set[str] = field(default_factory=set)
    leases: set[str] = field(default_factory=set)
    upstream: bool = False  # the host's resolv.conf changed
    host: bool = False  # the served namespace's name was removed or renamed
    shared: bool = False  # a deletion in virtnet's tables that names no network


class Watch:
    def __init__(self, api: Virtnet, rtnl: socket.socket, nft: socket.socket) -> None:
        self.api = api
        self.rtnl, self.nft = rtnl, nft
        self.inotify = ke.Inotify()
        self.resolv_conf = resolv_conf()
        self.inotify.add(os.path.dirname(self.resolv_conf), ke.DIR_CHANGES)
        # the served namespace's name going (ip netns del): the monitor stops at once
        self.host_path = str(netns_path(api.host.netns)) if api.host.netns else None
        if self.host_path is not None:
            self.inotify.add(os.path.dirname(self.host_path), ke.IN_DELETE | ke.IN_MOVED_FROM)
        self.entries: dict[str, _Entry] = {}
        self._by_link: dict[str, str] = {}
        self._by_key: dict[str, str] = {}
        self._by_leases: dict[str, set[str]] = {}
        self._by_pidfd: dict[int, str] = {}
        self._groups: dict[str, _Group] = {}
        self._by_group_fd: dict[int, str] = {}
        self._changed: set[str] = set()
        self._guard = threading.Lock()  # _changed is filled from the API's threads
        api.subscribe(self._on_event)

    @classmethod
    def open(cls, api: Virtnet) -> Watch:
        """Sockets made in the host namespace's thread: the kernel ties them to it."""

        def make() -> tuple[socket.socket, socket.socket]:
            groups = 1 << (ke.NFNLGRP_NFTABLES - 1)
            return (
                ke.netlink_socket(socket.NETLINK_ROUTE, ke.RTMGRP_LINK),
                ke.netlink_socket(ke.NETLINK_NETFILTER, groups),
            )

        rtnl, nft = api.services.call(make)
        return cls(api, rtnl, nft)

    def close(self) -> None:
        for name in list(self.entries):
            self._drop(name)
        self.rtnl.close()
        self.nft.close()
        self.inotify.close()

    # what to watch -----------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.kind not in (EventKind.LEASE_ADDED, EventKind.LEASE_EXPIRED):
            self.changed(event.network)

    def changed(self, name: str) -> None:
        """Rebuild what is watched of ``name`` before the next wait."""
        with self._guard:
            self._changed.add(name)

    def refresh(self, names: list[str] | None = None) -> None:
        """Rebuild the changed networks' entries (``names``: exactly these networks). The
        caller holds the API lock."""
        with self._guard:
            changed, self._changed = self._changed, set()
        if names is not None:
            for gone in set(self.entries) - set(names):
                self._drop(gone)
            changed = set(names)
        for name in changed:
            self._drop(name)
            entry = self._build(name)
            if entry is not None:
                self._add(name, entry)

    def _build(self, name: str) -> _Entry | None:
        active = self.api.store.active_network(name)
        if active is None:
            return None
        records = self.api.network_records(name)
        links = {str(r.args["ifname"]) for r in records if r.action == "core.link.delete"}
        if active.info.get("bridge"):
            links.add(str(active.info["bridge"]))
        for port in self.api.store.ports(name):
            ifname = port.get("attachment", {}).get("ifname")
            if ifname:
                links.add(str(ifname))
        leases, pid, group = None, None, None
        files = active.info.get("dnsmasq")
        if isinstance(files, dict):
            found = DnsmasqFiles.from_dict(files)
            leases = str(found.leases)
            if found.member is not None:
                group = str(found.directory)  # one pidfd for the group (_watch_group)
            else:
                pid = self._dnsmasq_pid(found)
        polled = any(r.action.startswith("core.ovs.") for r in records)
        key = active.uuid.replace("-", "")
        pidfd = ke.pidfd(pid) if pid else None
        return _Entry(key, links, leases, None, pidfd, polled, group=group)

    def _dnsmasq_pid(self, files: DnsmasqFiles) -> int | None:
        return self.api.services.call(lambda s: s.dnsmasq.pid(files), self.api.services)

    def _watch_group(self, directory: str) -> None:
        """A pidfd on the group's current dnsmasq (none while it is not running)."""
        group = self._groups[directory]
        if group.pidfd is not None:
            self._by_group_fd.pop(group.pidfd, None)
            os.close(group.pidfd)
            group.pidfd = None
        pid = self._dnsmasq_pid(DnsmasqFiles(Path(directory)))
        group.pidfd = ke.pidfd(pid) if pid else None
        if group.pidfd is not None:
            self._by_group_fd[group.pidfd] = directory

    def _add(self, name: str, entry: _Entry) -> None:
        self.entries[name] = entry
        self._by_key[entry.key] = name
        for link in entry.links:
            self._by_link[link] = name
        if entry.leases:  # a shared dnsmasq's leases file is its networks' (one watch)
            entry.wd = self.inotify.add(entry.leases)
            self._by_leases.setdefault(entry.leases, set()).add(name)
        if entry.pidfd is not None:
            self._by_pidfd[entry.pidfd] = name
        if entry.group is not None:
            group = self._groups.setdefault(entry.group, _Group())
            group.members.add(name)
            if group.pidfd is None:
                self._watch_group(entry.group)

    def _drop(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is None:
            return
        self._by_key.pop(entry.key, None)
        for link in entry.links:
            if self._by_link.get(link) == name:
                del self._by_link[link]
        sharing = self._by_leases.get(entry.leases or "", set())
        sharing.discard(name)
        if entry.leases and not sharing:
            self._by_leases.pop(entry.leases, None)
            if entry.wd is not None:  # (the same inode has the same watch)
                self.inotify.remove(entry.wd)
        if entry.pidfd is not None:
            self._by_pidfd.pop(entry.pidfd, None)
            os.close(entry.pidfd)
        group = self._groups.get(entry.group or "")
        if group is not None:
            group.members.discard(name)
            if not group.members:
                if group.pidfd is not None:
                    self._by_group_fd.pop(group.pidfd, None)
                    os.close(group.pidfd)
                del self._groups[entry.group or ""]

    def polled(self, interval: float) -> set[str]:
        """Networks with OVS objects whose last check is ``interval`` old."""
        now, due = time.monotonic(), set()
        for name, entry in self.entries.items():
            if entry.polled and now - entry.last_poll >= interval:
                entry.last_poll = now
                due.add(name)
        return due

    # waiting -------------------------------------------------------------------------------------
    def wait(self, timeout: float, stop: threading.Event) -> Due:
        """Block until events arrive (or ``timeout``); what they make due."""
        fds = [self.rtnl.fileno(), self.nft.fileno(), self.inotify.fd, *self._by_pidfd]
        fds += self._by_group_fd
        if not ke.readable(fds, timeout):
            return Due()
        stop.wait(SETTLE)
        due, everything = Due(), False
        datagrams, lost = ke.drain(self.rtnl)
        everything |= lost
        for data in datagrams:
            due.checks |= {self._by_link[n] for n in ke.link_changes(data) if n in self._by_link}
        datagrams, lost = ke.drain(self.nft)
        everything |= lost
        for data in datagrams:
            hit = ke.nft_deletions(data, TABLE)
            due.shared |= hit.unattributed
            due.checks |= {self._by_key[k] for k in hit.networks if k in self._by_key}
        paths = self.inotify.read()
        due.leases = {n for p in paths for n in self._by_leases.get(p, ())}
        due.upstream = self.resolv_conf in paths
        due.host = self.host_path in paths
        for fd in ke.readable(list(self._by_pidfd), 0):
            name = self._by_pidfd[fd]
            due.checks.add(name)
            self.changed(name)  # its next dnsmasq has another pid
        for fd in ke.readable(list(self._by_group_fd), 0):
            directory = self._by_group_fd[fd]
            self._watch_group(directory)  # a join or leave restarted it: the next one
            if self._groups[directory].pidfd is None:  # gone: one check repairs the group
                due.checks.add(min(self._groups[directory].members))
        if everything:
            due.checks = set(self.entries)
        return due
