"""OVSDB's own JSON-RPC protocol (RFC 7047), spoken directly: for databases virtnet does not
mirror, like OVN's northbound database.

:mod:`virtnet.services.ovsdb` keeps a local Open vSwitch database in memory through the
``ovs`` library's IDL, which pays off for a small database read over and over. A cloud's
northbound database is the opposite: large, shared by every host, and virtnet needs a
handful of rows of it per command. So this client sends transactions (RFC 7047 section 5.2)
whose ``where`` clauses pick the rows on the server, keeps no copy of the database, and
waits for a condition by asking the server to tell it about changes (``monitor_cond``)
instead of polling. One OVSDB transaction is atomic: what virtnet writes in one either
all happened or none of it did, which is what makes a network start in a remote database
need no undo of its own beyond the transaction that reverses it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from virtnet.errors import Conflict, OperationFailed, Unsupported

Row = dict[str, Any]
Where = list[list[Any]]


# --- datum encoding (RFC 7047 section 5.1) ------------------------------------------------
def oset(values: Iterable[Any]) -> list[Any]:
    return ["set", list(values)]


def omap(values: Mapping[str, Any]) -> list[Any]:
    return ["map", [[k, v] for k, v in sorted(values.items())]]


def ref(row_uuid: str) -> list[str]:
    return ["uuid", row_uuid]


def named(name: str) -> list[str]:
    return ["named-uuid", name]


def set_values(datum: Any) -> list[Any]:
    """A set column's values as a list (a one-value set may come as the bare atom)."""
    if isinstance(datum, list) and datum and datum[0] == "set":
        return [_atom(v) for v in datum[1]]
    return [_atom(datum)]


def map_values(datum: Any) -> dict[str, Any]:
    if isinstance(datum, list) and datum and datum[0] == "map":
        return {k: _atom(v) for k, v in datum[1]}
    return {}


# --- operations (RFC 7047 section 5.2) ----------------------------------------------------
Op = dict[str, Any]


def insert(table: str, row: dict[str, Any], handle: str | None = None) -> Op:
    """Insert ``row``; ``handle`` names it for later operations of the transaction
    (:func:`named`)."""
    op: Op = {"op": "insert", "table": table, "row": row}
    if handle:
        op["uuid-name"] = handle
    return op


def mutate(table: str, where: Where, *mutations: list[Any]) -> Op:
    return {"op": "mutate", "table": table, "where": where, "mutations": list(mutations)}


def delete(table: str, where: Where) -> Op:
    return {"op": "delete", "table": table, "where": where}


def expect(table: str, where: Where, rows: list[dict[str, Any]], columns: list[str]) -> Op:
    """Fail the transaction (``Conflict``) unless the matching rows' ``columns`` are exactly
    ``rows`` now: optimistic concurrency, against what was read before."""
    return {"op": "wait", "table": table, "timeout": 0, "where": where, "columns": columns,
            "until": "==", "rows": rows}  # fmt: skip


def by_uuid(row_uuid: str) -> Where:
    return [["_uuid", "==", ref(row_uuid)]]


def _atom(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and value[0] in ("uuid", "named-uuid"):
        return value[1]
    return value


class OvsdbRpc:
    """One connection to an OVSDB server (``unix:PATH`` or ``tcp:HOST:PORT``)."""

    def __init__(self, remote: str, timeout: float = 10.0, what: str = "OVSDB") -> None:
        self.remote = remote
        self.timeout = timeout
        self.what = what  # how errors name the database ("OVN northbound database")
        self._sock = self._connect()
        self._buffer = b""
        self._parse_due = False
        self._decoder = json.JSONDecoder()
        self._notifications: list[dict[str, Any]] = []

    def _connect(self) -> socket.socket:
        kind, _, address = self.remote.partition(":")
        try:
            if kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(address)
            elif kind == "tcp":
                host, _, port = address.rpartition(":")
                sock = socket.create_connection((host.strip("[]"), int(port)), self.timeout)
            else:
                raise Unsupported(
                    f"{self.remote!r}: only unix:PATH and tcp:HOST:PORT are supported",
                    subject=self.what,
                )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise OperationFailed(
                f"{self.remote} is unreachable: {reason}", subject=self.what
            ) from None
        return sock

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> OvsdbRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the wire -------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._sock.sendall(json.dumps(message).encode())
        except OSError as exc:
            raise OperationFailed(f"{self.remote}: {exc}", subject=self.what) from None

    def _receive(self, deadline: float) -> dict[str, Any]:
        """The next whole message; the server's echo requests are answered on the way.

        A parse is tried only when it can succeed: after a chunk with a closing brace came (a
        message ends with one), or after a message was taken (another may follow). Parsing
        the whole buffer on every chunk made a large answer cost quadratic time."""
        while True:
            if self._parse_due:
                message = self._take_message()
                if message is not None:
                    if message.get("method") == "echo":
                        self._send({"id": message["id"], "result": message["params"],
                                    "error": None})  # fmt: skip
                        continue
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise OperationFailed(f"{self.remote} did not answer in time", subject=self.what)
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise OperationFailed(f"{self.remote}: {exc}", subject=self.what) from None
            if not chunk:
                raise OperationFailed(f"{self.remote} closed the connection", subject=self.what)
            self._buffer += chunk
            self._parse_due = b"}" in chunk

    def _take_message(self) -> dict[str, Any] | None:
        """The first whole message of the buffer, if there is one (taken out of it)."""
        # a character cut between two chunks stays its bytes (surrogateescape), to be whole
        # again with the next chunk; a complete message never holds half of one
        text = self._buffer.decode("utf-8", "surrogateescape").lstrip()
        try:
            message, end = self._decoder.raw_decode(text)
        except ValueError:  # incomplete: read more
            self._parse_due = False
            return None
        self._buffer = text[end:].encode("utf-8", "surrogateescape")
        self._parse_due = True  # another message may be in the buffer already
        return dict(message)

    def call(self, method: str, params: list[Any], timeout: float | None = None) -> Any:
        ident = uuidlib.uuid4().hex
        self._send({"method": method, "params": params, "id": ident})
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("id") == ident:
                if message.get("error"):
                    raise OperationFailed(f"{method} failed: {message['error']}", subject=self.what)
                return message.get("result")
            if message.get("method"):  # a monitor's update, for wait()
                self._notifications.append(message)

    # --- transactions ---------------------------------------------------------------------
    def transact(self, db: str, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run ``ops`` as one atomic transaction; their results, or an error naming the
        operation that failed and why (nothing of the transaction then happened)."""
        results = self.call("transact", [db, *ops])
        for index, result in enumerate(results or []):
            if result and result.get("error"):
                op = ops[index] if index < len(ops) else {}
                what = f"{op.get('op', 'commit')} {op.get('table', '')}".strip()
                text = f"{result['error']}: {result.get('details', '')}".rstrip(": ")
                error = (
                    Conflict
                    if result["error"] in ("constraint violation", "timed out")
                    else OperationFailed
                )
                raise error(f"{what}: {text}", subject=self.what)  # fmt: skip
        return list(results)

    def select(self, db: str, table: str, where: Where, columns: list[str]) -> list[Row]:
        op = {"op": "select", "table": table, "where": where, "columns": ["_uuid", *columns]}
        rows = self.transact(db, [op])[0]["rows"]
        return [dict(row, _uuid=row["_uuid"][1]) for row in rows]

    def wait(
        self,
        db: str,
        table: str,
        where: Where,
        columns: list[str],
        done: Callable[[list[Row]], bool],
        timeout: float,
    ) -> list[Row]:
        """Block until ``done(rows)`` holds for the rows of ``table`` matching ``where``.

        The server pushes every change of those rows (``monitor_cond``); each wakes a fresh
        select, so the answer never depends on applying diffs correctly. No polling: a quiet
        database costs nothing while we wait.
        """
        monitor_id = uuidlib.uuid4().hex
        request = {table: [{"where": where, "columns": columns}]}
        self.call("monitor_cond", [db, monitor_id, request])
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._notifications.clear()
                rows = self.select(db, table, where, columns)
                if done(rows):
                    return rows
                if not self._notifications:
                    self._receive_notification(deadline)
        finally:
            with contextlib.suppress(OperationFailed):
                self.call("monitor_cancel", [monitor_id])

    def monitor(self, db: str, table: str, where: Where, columns: list[str]) -> str:
        """Ask to be told of every change of the matching rows (``monitor_cond``); returns
        the monitor's id. :meth:`changed` then says whether one arrived."""
        monitor_id = uuidlib.uuid4().hex
        self.call("monitor_cond", [db, monitor_id, {table: [{"where": where, "columns": columns}]}])
        self._notifications.clear()
        return monitor_id

    def changed(self, timeout: float) -> bool:
        """Whether a monitored change arrived within ``timeout`` seconds (False: none yet).
        A lost connection raises."""
        if self._notifications:
            self._notifications.clear()
            return True
        deadline = time.monotonic() + timeout
        try:
            self._receive_notification(deadline)
        except OperationFailed:
            if time.monotonic() < deadline:
                raise  # the connection, not the clock
            return False
        self._notifications.clear()
        return True

    def _receive_notification(self, deadline: float) -> None:
        while True:
            message = self._receive(deadline)
            if message.get("method"):
                return
