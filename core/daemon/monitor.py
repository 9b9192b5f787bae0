"""What the daemon does on its own: autostart, drift repair, DHCP lease events.

One thread. It checks a network when the kernel or a process says something of it changed
(:mod:`virtnet.daemon.watch`: links, nftables, dnsmasq exiting, leases files), networks on
Open vSwitch every ``interval`` (1 s), and every network once per ``full_interval`` (300 s,
spread evenly) for what no event covers. Idle, it costs the slow round only; drift an event
reports is repaired within ~0.3 s. Every check takes the API lock network by network, so
clients wait at most one check.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from virtnet.api import Virtnet
from virtnet.daemon.metrics import Metrics
from virtnet.daemon.watch import Watch
from virtnet.errors import VirtnetError
from virtnet.events import Event, EventKind
from virtnet.host import netns_path
from virtnet.model import parse_network
from virtnet.services.dnsmasq import parse_leases, within
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.recipes import subnets

T = TypeVar("T")

#: Seconds between checks for stopped shared networks after their database did not answer.
SWEEP_BACKOFF = 30.0
log = logging.getLogger("virtnetd")


@dataclass
class _LeaseFile:
    stamp: tuple[int, int] = (0, 0)  # mtime_ns, size: re-read only when it changes
    leases: dict[tuple[str | None, str], dict[str, object]] = field(default_factory=dict)


def namespace_identity(name: str) -> tuple[int, int] | None:
    """Which namespace ``/run/netns/NAME`` is (nsfs device and inode), None if none is."""
    try:
        found = os.stat(netns_path(name))
    except OSError:
        return None
    return found.st_dev, found.st_ino


def autostart_order(api: Virtnet) -> list[str]:
    """Autostart networks, those that make their own bridge first: a bridge-mode network on
    a bridge another network makes starts after it."""
    pending = []
    for d in api.store.definitions():
        if d.autostart:
            net = parse_network(d.xml)
            pending.append((0 if net.mode.has_own_bridge else 1, d.name))
    return [name for _, name in sorted(pending)]


class Monitor:
    def __init__(
        self,
        api: Virtnet,
        lock: threading.RLock,
        interval: float = 1.0,
        repair: bool = True,
        full_interval: float = 300.0,
    ) -> None:
        self.api = api
        self.lock = lock
        self.interval = interval
        self.repair = repair
        self.full_interval = full_interval
        self._last_tick = 0.0  # the first tick checks everything
        self._round: collections.deque[str] = collections.deque()  # the slow round's rest
        self._owed = 0.0  # networks of the round due and not yet checked
        self._watch: Watch | None = None
        self.pending: list[str] = []
        self._leases: dict[str, _LeaseFile] = {}
        self._unfixed: dict[str, list[str]] = {}  # drift repair could not fix, per network
        self._since = time.time()
        self._next_sweep = 0.0
        self.metrics: Metrics | None = None  # the daemon's, to count repairs in
        self._stop = threading.Event()
        #: set when the namespace this daemon serves has been deleted (``ip netns del``): the
        #: daemon then stops its networks and exits, so nothing of it keeps the namespace alive
        self.host_gone = threading.Event()
        self._host = namespace_identity(api.host.netns) if api.host.netns else None
        self._thread = threading.Thread(target=self._run, name="virtnetd-monitor", daemon=True)

    # autostart -------------------------------------------------------------------------------
    def autostart(self) -> None:
        """Start autostart networks; one that cannot start yet (its host bridge is missing)
        is retried on every pass."""
        with self.lock:
            active = set(self._active_names())
            self.pending = [n for n in autostart_order(self.api) if n not in active]
        self._retry_autostart(first=True)

    def _retry_autostart(self, first: bool = False) -> None:
        still = []
        for name in self.pending:
            try:
                with self.lock:
                    if self.api.store.active_network(name) is None:
                        self.api.start_network(name)
                log.info("autostart: network %s started", name)
            except VirtnetError as exc:
                if first:
                    log.warning("autostart: network %s: %s (retrying)", name, exc)
                still.append(name)
        self.pending = still

    def reconcile_all(self) -> None:
        """At start: let each backend bring its datapath back in line with virtnet's record
        of the ports (after a crash or a restart of Open vSwitch, stale OVS ports go and lost
        ones come back), before drift checks begin."""
        with self.lock:
            names = self._active_names()
            try:  # shared networks (OVN) with ports here: their ports come back too
                names += self.api.shared_networks_here()
            except VirtnetError as exc:
                log.warning("shared networks: %s", exc)
        for name in names:
            try:
                with self.lock:
                    done = self.api.reconcile_network(name)
            except VirtnetError as exc:
                log.warning("network %s: reconcile failed: %s", name, exc)
                continue
            for line in done:
                log.warning("network %s: reconciled: %s", name, line)

    def _active_names(self) -> list[str]:
        return list(self.api.store.active_xml())  # names only: no status decoding

    # the loop --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            with self.lock:  # it subscribes to the API's events: a plugin registration
                self._watch = Watch.open(self.api)
        except OSError as exc:  # no notifications here: check every network on the timer
            log.warning("cannot watch the kernel (%s): checking every network every %s s",
                        exc, self.interval)  # fmt: skip
            self._watch = None
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:
                    log.exception("monitor pass failed")
                    self._stop.wait(self.interval)
        finally:
            if self._watch is not None:
                self._watch.close()

    def tick(self) -> None:
        """Wait for events (at most ``interval``), then check the networks they name, the
        polled ones, and this tick's share of the slow round through every network (spread
        over ``full_interval``: no burst). Without a watch: every network, every tick."""
        if self._host_deleted():
            return
        if self.pending:
            self._retry_autostart()
        watch = self._watch
        if watch is None or self._last_tick == 0.0:  # no watch, or the first tick
            with self.lock:
                names = self._active_names()
                if watch is not None:
                    watch.refresh(names)
            self._pass(names, names)
            self._release_stale()
            self._last_tick = time.monotonic()
            if watch is None:
                self._stop.wait(self.interval)
            return
        with self.lock:
            watch.refresh()
        due = watch.wait(self.interval, self._stop)
        if due.host and self._host_deleted():
            return
        if due.upstream:
            self._new_upstream()
        if due.shared and self._shared_drift():
            due.checks |= set(watch.entries)
        share = self._round_share()
        if share:
            with self.lock:  # their entries too: a safety net for what events missed
                for name in share:
                    watch.changed(name)
                watch.refresh()
        checks = due.checks | watch.polled(self.interval) | set(share)
        self._pass(sorted(checks), sorted(due.leases | set(share)))
        self._release_stale()

    def _release_stale(self) -> None:
        """Ports here of shared networks stopped elsewhere (at most once per interval; after
        their database did not answer, once per :data:`SWEEP_BACKOFF` seconds: the check
        holds the API lock, and a dead server's timeout must not hold every client)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.interval
        try:
            with self.lock:
                released = self.api.release_stale_ports()
        except VirtnetError as exc:
            log.warning("shared networks: cannot check for stopped ones: %s", exc)
            self._next_sweep = time.monotonic() + SWEEP_BACKOFF
            return
        for uuid in released:
            log.info("port %s unplugged: its shared network stopped", uuid)

    def _host_deleted(self) -> bool:
        """The served namespace's name is gone, or names another namespace now (one stat)."""
        if self._host is None or namespace_identity(self.api.host.netns or "") == self._host:
            return False
        log.warning("network namespace %s was deleted: stopping its networks and exiting",
                    self.api.host.netns)  # fmt: skip
        self.host_gone.set()
        self._stop.set()
        return True

    def _round_share(self) -> list[str]:
        """The next networks of the round through all of them, as many as the time since the
        last tick asks for to get round in ``full_interval``."""
        now = time.monotonic()
        elapsed, self._last_tick = now - self._last_tick, now
        if not self._round:
            with self.lock:
                self._round = collections.deque(self._active_names())
        self._owed += len(self._round) * elapsed / self.full_interval
        share = []
        while self._round and self._owed >= 1:
            share.append(self._round.popleft())
            self._owed -= 1
        return share

    def _shared_drift(self) -> list[str]:
        """The base chains every network's rules hang from, when a deletion named none."""
        with self.lock:
            return list(
                self.api.services.call(lambda s: s.firewall.shared_drift(), self.api.services)
            )

    def _new_upstream(self) -> None:
        """resolv.conf changed: the shared servers file again, and every dnsmasq re-reads
        it (SIGHUP: leases, sockets and the cache's local names stay)."""
        with self.lock:
            every = [a.info.get("dnsmasq") for a in self.api.store.active()]
            found = [DnsmasqFiles.from_dict(f) for f in every if isinstance(f, dict)]
            files = list({f.conf: f for f in found}.values())  # a shared one: once
            dnsmasq = self.api.services.call(lambda s: s.dnsmasq, self.api.services)
            if not files or not dnsmasq.write_upstream(files[0]):
                return
            for f in files:
                try:
                    dnsmasq.reload(f)
                except VirtnetError as exc:
                    log.warning("dnsmasq %s: %s", f.directory.name, exc)
        log.info("resolv.conf changed: %d dnsmasq re-read their upstream servers", len(files))

    def _pass(self, checks: list[str], leases: list[str]) -> None:
        for name in leases:
            self._watch_leases(name)
        for name in checks:  # a link of the network changed: a VM's tap may have closed
            self._release(name)
        for name in checks if self.repair else []:
            if self._stop.is_set():
                return
            self._repair(name)
        # the networks still running: the watch's, or (timer only) this pass's, which is all
        running = set(self._watch.entries) if self._watch is not None else set(leases)
        for gone in set(self._leases) - running:
            del self._leases[gone]

    def _release(self, name: str) -> None:
        released = self._locked(name, "releasing closed taps", self.api.release_closed_ports)
        for uuid in released or []:
            log.info("network %s: port %s released: no process holds its tap", name, uuid)

    def _locked(self, name: str, what: str, call: Callable[[str], T]) -> T | None:
        """``call(name)`` under the API lock if the network is still active; a failure is
        logged (the monitor goes on with the other networks)."""
        with self.lock:
            if self.api.store.active_network(name) is None:
                return None
            try:
                return call(name)
            except VirtnetError as exc:
                log.warning("network %s: %s failed: %s", name, what, exc)
                return None

    def _repair(self, name: str) -> None:
        result = self._locked(name, "repair", self.api.repair_network)
        if result is None:
            return
        if not result.found:
            self._unfixed.pop(name, None)
            return
        if self._watch is not None:  # a re-made bridge or dnsmasq: new names, pids to watch
            self._watch.changed(name)
        if result.remaining and result.remaining == self._unfixed.get(name):
            return  # the same drift nothing here can fix (a NIC down): said once already
        log.warning("network %s drifted: %s", name, "; ".join(result.found))
        for problem in result.problems:
            log.warning("network %s: could not repair: %s", name, problem)
        if result.remaining:
            log.warning("network %s: still: %s", name, "; ".join(result.remaining))
            self._unfixed[name] = result.remaining
        else:
            log.warning("network %s: repaired", name)
            self._unfixed.pop(name, None)
            if self.metrics is not None:
                self.metrics.repaired(name)

    def _watch_leases(self, name: str) -> None:
        with self.lock:
            active = self.api.store.active_network(name)
        files = active.info.get("dnsmasq") if active else None
        if not isinstance(files, dict):
            return
        found = DnsmasqFiles.from_dict(files)
        path = found.leases
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return
        known = self._leases.get(name)
        if known is not None and known.stamp == stamp:
            return
        try:
            leases = parse_leases(path.read_text())
        except OSError:
            return
        if found.member is not None and active is not None:  # its group's file: its own
            leases = within(leases, subnets(parse_network(active.xml)))
        current = {(lease.mac, lease.ip): lease.as_dict() for lease in leases}
        self._leases[name] = _LeaseFile(stamp, current)
        if known is None:
            if active is None or active.started < self._since:
                return  # running before the daemon: its leases are not news
            known = _LeaseFile()
        for key in current.keys() - known.leases.keys():
            self.api.hooks.emit(Event(EventKind.LEASE_ADDED, name, detail=current[key]))
        for key in known.leases.keys() - current.keys():
            self.api.hooks.emit(Event(EventKind.LEASE_EXPIRED, name, detail=known.leases[key]))
