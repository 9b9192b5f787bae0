"""virtnetd's wire protocol: JSON-RPC 2.0, one JSON object per line, over a unix socket.

Why JSON-RPC over a stream socket rather than HTTP with an OpenAPI document: the daemon must
push (command output as it is produced, the event stream) and the thin client must start in a
few milliseconds. A line-framed JSON-RPC exchange needs only :mod:`json` and :mod:`socket`
on the client (an HTTP client and a schema library cost more to import than the whole
command), notifications are part of the standard, and ``socat``/``nc -U`` can speak it.
docs/protocol.md is the reference; :data:`PROTOCOL_VERSION` changes when a method or a
result changes shape incompatibly (a client checks it with ``daemon.hello``).

This module imports only the standard library and :mod:`virtnet.errors`.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from virtnet import errors

PROTOCOL_VERSION = 1
MAX_MESSAGE = 64 << 20  # one response line (the client reads the daemon's answers)
#: One request line the daemon accepts: a definition is at most 4 MiB (xml_node), and JSON's
#: escaping can double it.
MAX_REQUEST = 10 << 20

#: JSON-RPC error codes of virtnet's error classes (the standard's own are negative).
ERROR_CODES: dict[str, int] = {
    "VirtnetError": 1,
    "InvalidInput": 2,
    "NotFound": 3,
    "Conflict": 4,
    "Unsupported": 5,
    "OperationFailed": 6,
    "PermissionDenied": 7,
}
INTERNAL_ERROR = -32603
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INVALID_REQUEST = -32600
PARSE_ERROR = -32700


class ProtocolError(errors.VirtnetError):
    """The daemon or the client broke the protocol (or the connection dropped)."""


def encode(message: dict[str, Any]) -> bytes:
    # allow_nan=False: NaN and Infinity are not JSON, and a peer must never be sent them
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def request(ident: int, method: str, params: dict[str, Any]) -> bytes:
    return encode({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})


def notification(method: str, params: dict[str, Any]) -> bytes:
    return encode({"jsonrpc": "2.0", "method": method, "params": params})


def result(ident: Any, value: Any) -> bytes:
    return encode({"jsonrpc": "2.0", "id": ident, "result": value})


def error(ident: Any, code: int, message: str, data: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return encode({"jsonrpc": "2.0", "id": ident, "error": body})


def error_from_exception(ident: Any, exc: errors.VirtnetError) -> bytes:
    name = type(exc).__name__ if type(exc).__name__ in ERROR_CODES else "VirtnetError"
    return error(
        ident,
        ERROR_CODES[name],
        str(exc),
        {"class": name, "subject": exc.subject, "exit_code": exc.exit_code},
    )


def exception_from_error(body: dict[str, Any]) -> errors.VirtnetError:
    """The client side: the daemon's error as the same :mod:`virtnet.errors` class."""
    data = body.get("data") or {}
    cls = getattr(errors, str(data.get("class", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.VirtnetError)):
        cls = ProtocolError if body.get("code", 0) < 0 else errors.VirtnetError
    exc = cls.__new__(cls)
    Exception.__init__(exc, str(body.get("message", "unknown error")))
    exc.subject = data.get("subject")
    return exc


class Budget:
    """Bytes all connections may hold in unanswered request lines together, so many large
    requests at once cannot take the daemon's memory (each line is also capped alone)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class TooLarge(ProtocolError):
    """A line over the size limit, or over what the daemon can buffer right now."""


class LineReader:
    """Reads newline-framed JSON messages from a stream socket.

    ``limit`` caps one line; ``budget`` (the daemon's) caps what all readers hold at once.
    A message that is valid JSON but not an object is returned as it is: the caller answers
    it as an invalid request and goes on.
    """

    def __init__(
        self, sock: socket.socket, limit: int = MAX_MESSAGE, budget: Budget | None = None
    ) -> None:
        self.sock = sock
        self.limit = limit
        self.budget = budget
        self.buffer = b""

    def read(self) -> Any:
        """The next message, or None at end of stream."""
        chunks = [self.buffer]
        size = len(self.buffer)
        held = 0
        try:
            while b"\n" not in chunks[-1]:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    if b"".join(chunks).strip():
                        raise ProtocolError("connection closed in the middle of a message")
                    return None
                size += len(chunk)
                if size > self.limit:
                    raise TooLarge(f"message longer than {self.limit} bytes")
                if self.budget is not None:
                    if not self.budget.take(len(chunk)):
                        raise TooLarge("the daemon is holding too many large requests; retry")
                    held += len(chunk)
                chunks.append(chunk)
            line, _, self.buffer = b"".join(chunks).partition(b"\n")
        finally:
            if self.budget is not None:
                self.budget.give(held)
        try:
            return json.loads(line)
        except RecursionError:
            raise ProtocolError("not JSON: nested too deeply") from None
        except ValueError as exc:
            raise ProtocolError(f"not JSON: {exc}") from None
