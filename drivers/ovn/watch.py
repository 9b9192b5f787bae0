"""Ports going up and down, as OVN sees them: virtnetd's watcher for this chassis's ports.

OVN sets ``Logical_Switch_Port.up`` once ovn-controller bound the port and installed its
flows, and clears it when the chassis loses it (its ovn-controller died or released it). A
stack wants to hear of both without polling, so this watcher subscribes to the changes of
the ports bound to this chassis and emits ``port-up`` / ``port-down`` events. If the
northbound database goes away it says so once, and connects again every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from virtnet.errors import VirtnetError
from virtnet.events import Event, EventKind
from virtnet.services.ovsdb_rpc import OvsdbRpc, map_values, omap, set_values
from virtnet_ovn import nb
from virtnet_ovn.config import OvnConfig, chassis_name

log = logging.getLogger(__name__)
RETRY = 3.0


def port_watcher(config: OvnConfig) -> Callable[[Callable[[Event], None], threading.Event], None]:
    def run(emit: Callable[[Event], None], stop: threading.Event) -> None:
        known: dict[str, bool] = {}
        complained = False
        while not stop.is_set():
            try:
                _watch(config, emit, stop, known)
            except VirtnetError as exc:
                if not complained:
                    log.warning("OVN port events paused: %s (retrying)", exc)
                complained = True
                stop.wait(RETRY)
                continue
            complained = False

    return run


def _watch(
    config: OvnConfig,
    emit: Callable[[Event], None],
    stop: threading.Event,
    known: dict[str, bool],
) -> None:
    chassis = chassis_name(config)
    where = [["external_ids", "includes", omap({nb.CHASSIS_KEY: chassis})]]
    columns = ["name", "up", "external_ids"]
    with config.connect_nb() as db:
        db.monitor(nb.DB, "Logical_Switch_Port", where, columns)
        _report(db, where, columns, emit, known, chassis)
        while not stop.is_set():
            if db.changed(1.0):
                _report(db, where, columns, emit, known, chassis)


def _report(
    db: OvsdbRpc,
    where: list[list[Any]],
    columns: list[str],
    emit: Callable[[Event], None],
    known: dict[str, bool],
    chassis: str,
) -> None:
    """Read the ports again and emit what changed since the last read (a first read after a
    reconnect reports only differences from before it)."""
    rows = db.select(nb.DB, "Logical_Switch_Port", where, columns)
    names = {s["external_ids"].get(nb.NETWORK_KEY): s["external_ids"].get(nb.NAME_KEY)
             for s in nb.switches(db)}  # fmt: skip
    seen = set()
    for row in rows:
        port = str(row["name"])
        seen.add(port)
        up = set_values(row["up"]) == [True]
        if known.get(port, False) != up:
            network = names.get(map_values(row["external_ids"]).get(nb.NETWORK_KEY)) or ""
            kind = EventKind.PORT_UP if up else EventKind.PORT_DOWN
            emit(Event(kind, network, port, {"chassis": chassis}))
        known[port] = up
    for gone in set(known) - seen:
        del known[gone]  # unplugged: port-unplugged said so already
