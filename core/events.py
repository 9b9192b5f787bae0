"""Lifecycle events: what happened to which network or port, and when.

Events go to every plugin's ``virtnet_event`` hook (audit logs, an embedding stack's
callbacks, the daemon's event stream); they report, they cannot veto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    NETWORK_DEFINED = "network-defined"
    NETWORK_UNDEFINED = "network-undefined"
    NETWORK_STARTED = "network-started"
    NETWORK_STOPPED = "network-stopped"
    NETWORK_REPAIRED = "network-repaired"
    PORT_PLUGGED = "port-plugged"
    PORT_UNPLUGGED = "port-unplugged"
    LEASE_ADDED = "lease-added"
    LEASE_EXPIRED = "lease-expired"
    #: the datapath says a port can (not) carry traffic: OVN bound it and installed its
    #: flows (``Logical_Switch_Port.up``), or lost it (its chassis died); from watchers
    PORT_UP = "port-up"
    PORT_DOWN = "port-down"


#: ``run(emit, stop)``: what a plugin's ``virtnet_watchers`` returns (virtnetd runs each).
Watcher = Callable[[Callable[["Event"], None], threading.Event], None]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    network: str
    port: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "network": self.network,
            "port": self.port,
            "detail": self.detail,
            "time": self.time,
        }
