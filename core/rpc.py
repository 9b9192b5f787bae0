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
from typing import Any

from virtnet import errors

PROTOCOL_VERSION = 1
MAX_MESSAGE = 64 << 20  # one request or response line; a network XML is a few KiB

#: JSON-RPC error codes of virtnet's error classes (the standard's own are negative).
ERROR_CODES: dict[str, int] = {
    "VirtnetError": 1,
    "InvalidInput": 2,
    "NotFound": 3,
    "Conflict": 4,
    "Unsupported": 5,
    "OperationFailed": 6,
}
INTERNAL_ERROR = -32603
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INVALID_REQUEST = -32600
PARSE_ERROR = -32700


class ProtocolError(errors.VirtnetError):
    """The daemon or the client broke the protocol (or the connection dropped)."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


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


class LineReader:
    """Reads newline-framed JSON messages from a stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self) -> dict[str, Any] | None:
        """The next message, or None at end of stream."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                if self.buffer.strip():
                    raise ProtocolError("connection closed in the middle of a message")
                return None
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE:
                raise ProtocolError(f"message longer than {MAX_MESSAGE} bytes")
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("a message must be a JSON object")
        return message
