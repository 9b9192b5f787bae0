"""A client of virtnetd: the library's API, served by the daemon, over its unix socket.

>>> with Client.connect(netns="lab1") as vn:                   # doctest: +SKIP
...     vn.define_network(open("default.xml").read())
...     vn.start_network("default")
...     for event in vn.events():
...         print(event["kind"], event["network"])

Method names and parameters are those of :class:`virtnet.api.Virtnet`; results are their
JSON forms (docs/protocol.md). Errors arrive as the same :mod:`virtnet.errors` classes.
Importing this module is cheap (standard library only): the thin ``virtnet`` CLI uses it.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from virtnet import rpc, thin
from virtnet.errors import PermissionDenied, VirtnetError
from virtnet.paths import resolve_dirs, socket_path

Notification = Callable[[str, dict[str, Any]], None]


class DaemonNotRunning(VirtnetError):
    """No virtnetd answers on the socket (absent, or left behind by a dead daemon)."""


class Client:
    """One connection to virtnetd. Not thread-safe: give each thread its own."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self._reader = rpc.LineReader(sock)
        self._ids = itertools.count(1)

    @classmethod
    def connect(
        cls,
        path: str | Path | None = None,
        *,
        netns: str | None = None,
        run_dir: str | Path | None = None,
        timeout: float | None = None,
    ) -> Client:
        """Connect to the daemon of ``netns`` (its socket is in that host's run dir)."""
        target = Path(path) if path else socket_path(resolve_dirs(None, run_dir, netns)[1])
        try:
            raw = thin.connect(str(target))  # one place maps connect errors to messages
        except thin.Unavailable as exc:
            raise DaemonNotRunning(str(exc)) from None
        except PermissionError as exc:
            raise PermissionDenied(str(exc)) from None
        sock = socket.socket(fileno=raw.detach())
        sock.settimeout(timeout)
        return cls(sock, target)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the protocol ---------------------------------------------------------------------------
    def call(self, method: str, notify: Notification | None = None, **params: Any) -> Any:
        """One request; notifications that arrive before its answer go to ``notify``."""
        ident = next(self._ids)
        try:
            self.sock.sendall(rpc.request(ident, method, params))
        except OSError as exc:
            raise rpc.ProtocolError(f"virtnetd on {self.path}: {exc.strerror or exc}") from None
        while True:
            message = self._read()
            if "id" not in message:
                if notify is not None:
                    notify(str(message.get("method")), message.get("params") or {})
                continue
            if message.get("id") != ident:
                raise rpc.ProtocolError(f"answer to request {message.get('id')}, not {ident}")
            if "error" in message:
                raise rpc.exception_from_error(message["error"])
            return message.get("result")

    def _read(self) -> dict[str, Any]:
        try:
            message = self._reader.read()
        except OSError as exc:
            raise rpc.ProtocolError(f"virtnetd on {self.path}: {exc.strerror or exc}") from None
        if message is None:
            raise rpc.ProtocolError(f"virtnetd on {self.path} closed the connection")
        if not isinstance(message, dict):
            raise rpc.ProtocolError(f"virtnetd on {self.path} sent a message that is no object")
        return message

    def events(self, since: int | None = None, boot: str | None = None) -> Iterator[dict[str, Any]]:
        """Subscribe now; the iterator yields every event the daemon sees from this moment,
        as it happens, until the connection closes. Each carries ``seq`` and ``boot``: after
        a reconnect, pass the last ones seen to get what happened meanwhile first (or one
        ``events-lost`` event: then read the state again; docs/protocol.md)."""
        params: dict[str, Any] = {} if since is None else {"since": since, "boot": boot}
        self.subscribed: dict[str, Any] = self.call("subscribe_events", **params)
        return self._event_stream()

    def _event_stream(self) -> Iterator[dict[str, Any]]:
        while True:
            message = self._read()
            if message.get("method") == "event":
                yield dict(message.get("params") or {})

    # the API (names and parameters of virtnet.api.Virtnet) ----------------------------------
    def hello(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("hello")
        return result

    def define_network(self, xml: str, backend: str | None = None) -> dict[str, Any]:
        return dict(self.call("define_network", xml=xml, backend=backend))

    def create_network(self, xml: str, backend: str | None = None) -> dict[str, Any]:
        return dict(self.call("create_network", xml=xml, backend=backend))

    def undefine_network(self, name: str) -> None:
        self.call("undefine_network", name=name)

    def start_network(self, name: str) -> dict[str, Any]:
        return dict(self.call("start_network", name=name))

    def destroy_network(self, name: str) -> None:
        self.call("destroy_network", name=name)

    def set_autostart(self, name: str, enabled: bool = True) -> None:
        self.call("set_autostart", name=name, enabled=enabled)

    def list_networks(self, *, active: bool = True, inactive: bool = True) -> list[dict[str, Any]]:
        return list(self.call("list_networks", active=active, inactive=inactive))

    def network_info(self, name: str) -> dict[str, Any]:
        return dict(self.call("network_info", name=name))

    def dumpxml(self, name: str, *, inactive: bool = False) -> str:
        return str(self.call("dumpxml", name=name, inactive=inactive))

    def check_network(self, name: str) -> list[str]:
        return list(self.call("check_network", name=name))

    def repair_network(self, name: str) -> list[str]:
        return list(self.call("repair_network", name=name))

    def create_port(self, network: str, xml: str | None = None) -> dict[str, Any]:
        return dict(self.call("create_port", network=network, xml=xml))

    def list_ports(self, network: str) -> list[dict[str, Any]]:
        return list(self.call("list_ports", network=network))

    def delete_port(self, uuid: str) -> None:
        self.call("delete_port", uuid=uuid)

    def dhcp_leases(self, name: str, mac: str | None = None) -> list[dict[str, Any]]:
        return list(self.call("dhcp_leases", name=name, mac=mac))

    def backends(self) -> list[dict[str, Any]]:
        return list(self.call("backends"))


#: PermissionDenied (virtnet.errors): the socket exists but this user may not use it.
__all__ = ["Client", "DaemonNotRunning", "PermissionDenied"]
