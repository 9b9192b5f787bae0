"""What the daemon does on its own: autostart, drift repair, DHCP lease events.

One thread, one pass per ``interval`` (1 s by default, so drift is repaired within ~2 s).
Every pass takes the API lock network by network, so clients wait at most one check.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from virtnet.api import Virtnet
from virtnet.errors import VirtnetError
from virtnet.events import Event, EventKind
from virtnet.model import parse_network
from virtnet.services.dnsmasq import parse_leases
from virtnet.services.dnsmasq_conf import DnsmasqFiles

log = logging.getLogger("virtnetd")


@dataclass
class _LeaseFile:
    stamp: tuple[int, int] = (0, 0)  # mtime_ns, size: re-read only when it changes
    leases: dict[tuple[str | None, str], dict[str, object]] = field(default_factory=dict)


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
        self, api: Virtnet, lock: threading.RLock, interval: float = 1.0, repair: bool = True
    ) -> None:
        self.api = api
        self.lock = lock
        self.interval = interval
        self.repair = repair
        self.pending: list[str] = []
        self._leases: dict[str, _LeaseFile] = {}
        self._unfixed: dict[str, list[str]] = {}  # drift repair could not fix, per network
        self._since = time.time()
        self._stop = threading.Event()
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
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("monitor pass failed")

    def tick(self) -> None:
        if self.pending:
            self._retry_autostart()
        with self.lock:
            names = self._active_names()
            firewall = self.api.services.call(lambda s: s.firewall, self.api.services)
        with firewall.cached_reads():  # one listing of virtnet's tables for the whole pass
            for name in names:
                if self._stop.is_set():
                    return
                self._watch_leases(name)
                if self.repair:
                    self._repair(name)
        for gone in set(self._leases) - set(names):
            del self._leases[gone]

    def _repair(self, name: str) -> None:
        with self.lock:
            if self.api.store.active_network(name) is None:
                return
            try:
                result = self.api.repair_network(name)
            except VirtnetError as exc:
                log.warning("network %s: repair failed: %s", name, exc)
                return
        if not result.found:
            self._unfixed.pop(name, None)
            return
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

    def _watch_leases(self, name: str) -> None:
        with self.lock:
            active = self.api.store.active_network(name)
        files = active.info.get("dnsmasq") if active else None
        if not isinstance(files, dict):
            return
        path = DnsmasqFiles.from_dict(files).leases
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return
        known = self._leases.get(name)
        if known is not None and known.stamp == stamp:
            return
        try:
            text = path.read_text()
            current = {(lease.mac, lease.ip): lease.as_dict() for lease in parse_leases(text)}
        except OSError:
            return
        self._leases[name] = _LeaseFile(stamp, current)
        if known is None:
            if active is None or active.started < self._since:
                return  # running before the daemon: its leases are not news
            known = _LeaseFile()
        for key in current.keys() - known.leases.keys():
            self.api.hooks.emit(Event(EventKind.LEASE_ADDED, name, detail=current[key]))
        for key in known.leases.keys() - current.keys():
            self.api.hooks.emit(Event(EventKind.LEASE_EXPIRED, name, detail=known.leases[key]))
