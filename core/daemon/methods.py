"""The JSON-RPC methods: :class:`virtnet.api.Virtnet`'s methods by name, results as JSON.

Every call runs under one lock, so clients are serialised (per host, hence per network) and
never see half-done work; operations take milliseconds. ``cli`` runs the ordinary CLI in the
calling connection's thread for the thin client.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

from virtnet.api import Virtnet
from virtnet.daemon.events import EventHub
from virtnet.daemon.metrics import Metrics
from virtnet.model import Network, NetworkPort, format_network, format_port, parse_port
from virtnet.model.codec import to_dict
from virtnet.rpc import PROTOCOL_VERSION

#: Virtnet methods served as they are (name and keyword parameters).
API_METHODS = frozenset(
    {
        "define_network",
        "create_network",
        "undefine_network",
        "start_network",
        "destroy_network",
        "set_autostart",
        "list_networks",
        "network_info",
        "dumpxml",
        "lookup_uuid",
        "check_network",
        "repair_network",
        "reconcile_network",
        "update_network",
        "list_ports",
        "get_port",
        "delete_port",
        "dhcp_leases",
        "reserve_address",
        "release_address",
        "backends",
    }
)


class Serialized:
    """The API with every method call taken under ``lock`` (and its operations timed into
    ``metrics``, the time under the lock: the operation's own)."""

    def __init__(self, target: Virtnet, lock: threading.RLock, metrics: Metrics | None = None):
        self._target = target
        self._lock = lock
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        call = self._metrics.timed(name, attr) if self._metrics is not None else attr

        @functools.wraps(attr)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return call(*args, **kwargs)

        return locked


def to_json(value: Any) -> Any:
    """The wire form of an API result."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, Network):
        return {"name": value.name, "uuid": value.uuid, "xml": format_network(value)}
    if isinstance(value, NetworkPort):
        return {**to_dict(value), "xml": format_port(value)}
    if hasattr(value, "as_dict"):
        return to_json(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    raise TypeError(f"no JSON form for {type(value).__name__}")


class Methods:
    """Dispatch by name; ``host`` describes the host this daemon serves (for ``hello``)."""

    def __init__(self, api: Serialized, hub: EventHub, host: dict[str, Any]) -> None:
        self.api = api
        self.hub = hub
        self.host = host
        self.extra: dict[str, Callable[..., Any]] = {
            "hello": self.hello,
            "create_port": self.create_port,
        }

    def find(self, name: str) -> Callable[..., Any] | None:
        if name in API_METHODS:
            fn: Callable[..., Any] = getattr(self.api, name)

            @functools.wraps(fn)
            def call(*args: Any, **params: Any) -> Any:
                return to_json(fn(*args, **params))

            return call
        return self.extra.get(name)

    def hello(self) -> dict[str, Any]:
        from virtnet import __version__

        return {"protocol": PROTOCOL_VERSION, "version": __version__, "host": self.host}

    def create_port(self, network: str, xml: str | None = None) -> Any:
        port = parse_port(xml, network) if xml else NetworkPort(network=network)
        return to_json(self.api.create_port(network, port))
