"""A unix stream socket served by one thread per connection until it is closed: the shape
of virtnetd's API socket and of its plug socket."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path


class Listener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.closing = threading.Event()

    def serve(self) -> None:
        assert self.sock is not None
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self.closing.is_set():
                    return
                raise
            self.accepted(conn)

    def accepted(self, conn: socket.socket) -> None:
        """A new connection: served on a thread of its own (subclasses may refuse it)."""
        threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closing.set()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        self.path.unlink(missing_ok=True)
