"""The daemon's socket: accept, check the peer, read requests, answer them.

One thread per connection. A connection asks one thing at a time; ``cli`` streams the
command's output as ``output`` notifications before its answer, and ``subscribe_events``
turns the connection into an event stream until the client closes it.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import logging
import os
import pwd
import queue
import select
import socket
import struct
from pathlib import Path
from typing import Any

from virtnet import rpc
from virtnet.cli_util import DaemonContext, set_daemon_context
from virtnet.daemon import stdio
from virtnet.daemon.events import EventHub
from virtnet.daemon.listener import Listener
from virtnet.daemon.methods import Methods
from virtnet.daemon.params import params_problem
from virtnet.errors import InvalidInput, VirtnetError

log = logging.getLogger("virtnetd")

#: What all connections together may hold in request lines not yet answered: four maximal
#: requests at once; a fifth waits for none, it is refused (-32600) and may retry.
MAX_BUFFERED = 4 * rpc.MAX_REQUEST


def _valid_id(ident: Any) -> bool:
    """JSON-RPC ids are strings, numbers or null; virtnet takes integers, not fractions (the
    spec discourages them, and 1e400 parses to infinity, which is not JSON)."""
    return (
        ident is None
        or isinstance(ident, str)
        or (isinstance(ident, int) and not isinstance(ident, bool))
    )


def _alive(conn: socket.socket) -> bool:
    """Is the client still there? (A closed peer reads as end of stream.)"""
    ready, _, _ = select.select([conn], [], [], 0)
    if not ready:
        return True
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class Server(Listener):
    def __init__(
        self, path: Path, methods: Methods, hub: EventHub, group: str | None = None
    ) -> None:
        super().__init__(path)
        self.methods = methods
        self.hub = hub
        self.gid = grp.getgrnam(group).gr_gid if group else None
        self.group = group
        self.budget = rpc.Budget(MAX_BUFFERED)

    # the socket ------------------------------------------------------------------------------
    def bind(self) -> None:
        """Root only (0600), or root and ``group`` (0660). A stale socket file is replaced:
        the caller holds the daemon's lock, so no live daemon owns it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # never a window with a more open socket
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.path, os.geteuid(), self.gid)
            os.chmod(self.path, 0o660)
        sock.listen(128)
        self.sock = sock

    # a connection ----------------------------------------------------------------------------
    def _peer_allowed(self, conn: socket.socket) -> tuple[bool, int]:
        """Defence in depth behind the socket's mode: root, our own user, or the group."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, gid = struct.unpack("3i", creds)
        if uid in (0, os.geteuid()):
            return True, uid
        if self.gid is None:
            return False, uid
        if gid == self.gid:
            return True, uid
        try:
            return pwd.getpwuid(uid).pw_name in grp.getgrgid(self.gid).gr_mem, uid
        except KeyError:
            return False, uid

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            allowed, uid = self._peer_allowed(conn)
            if not allowed:
                log.warning("refused a client with uid %d", uid)
                conn.sendall(rpc.error(None, rpc.INVALID_REQUEST, "permission denied"))
                return
            reader = rpc.LineReader(conn, rpc.MAX_REQUEST, self.budget)
            try:
                while (message := reader.read()) is not None:
                    if not self._answer(conn, message):
                        return
            except rpc.TooLarge as exc:  # said, then hang up: the rest of the line is unread
                with contextlib.suppress(OSError):
                    conn.sendall(rpc.error(None, rpc.INVALID_REQUEST, str(exc)))
            except rpc.ProtocolError as exc:  # garbage: say so, then hang up
                with contextlib.suppress(OSError):
                    conn.sendall(rpc.error(None, rpc.PARSE_ERROR, str(exc)))
            except OSError as exc:
                log.debug("connection ended: %s", exc)

    def _answer(self, conn: socket.socket, message: Any) -> bool:
        """Answer one request; False when the connection is done (event streams end so)."""
        if not isinstance(message, dict):  # a batch, or any other JSON value
            conn.sendall(rpc.error(None, rpc.INVALID_REQUEST, "a request must be a JSON object"))
            return True
        ident = message.get("id")
        if not _valid_id(ident):
            conn.sendall(rpc.error(None, rpc.INVALID_REQUEST, "id must be a string, an "
                                   "integer or null"))  # fmt: skip
            return True
        method = message.get("method")
        params = message.get("params")
        params = {} if params is None else params
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
            conn.sendall(rpc.error(ident, rpc.INVALID_REQUEST, "not a JSON-RPC 2.0 request"))
            return True
        if not isinstance(params, dict):
            conn.sendall(rpc.error(ident, rpc.INVALID_PARAMS, "params must be an object"))
            return True
        if method == "subscribe_events":
            since, boot = params.get("since"), params.get("boot")
            if (since is not None and (not isinstance(since, int) or isinstance(since, bool))) or (
                boot is not None and not isinstance(boot, str)
            ):
                conn.sendall(rpc.error(ident, rpc.INVALID_PARAMS, "subscribe_events: since is "
                                       "an integer, boot a string"))  # fmt: skip
                return True
            self._stream_events(conn, ident, since, boot)
            return False
        if method == "cli":
            fn: Any = self._cli(conn)
        else:
            fn = self.methods.find(method)
        if fn is None:
            conn.sendall(rpc.error(ident, rpc.METHOD_NOT_FOUND, f"no method {method!r}"))
            return True
        problem = params_problem(fn, params)
        if problem is not None:
            conn.sendall(rpc.error(ident, rpc.INVALID_PARAMS, f"{method}: {problem}"))
            return True
        try:
            value = fn(**params)
        except VirtnetError as exc:
            conn.sendall(rpc.error_from_exception(ident, exc))
            return True
        except Exception:  # a bug: the details go to the log, not to the client
            log.exception("%s failed", method)
            conn.sendall(rpc.error(ident, rpc.INTERNAL_ERROR, f"{method}: internal error "
                                   "(details in virtnetd's log)"))  # fmt: skip
            return True
        if ident is not None:
            conn.sendall(rpc.result(ident, value))
        return True

    def _stream_events(
        self, conn: socket.socket, ident: Any, since: int | None, boot: str | None
    ) -> None:
        with self.hub.subscription(since, boot) as events:
            conn.sendall(rpc.result(ident, {"subscribed": True, **self.hub.position()}))
            while not self.closing.is_set():
                try:
                    item = events.get(timeout=1.0)
                except queue.Empty:
                    if not _alive(conn):
                        return
                    continue
                conn.sendall(rpc.notification("event", item))

    def _cli(self, conn: socket.socket) -> Any:
        """The ``cli`` method bound to this connection: run the CLI here, stream its output."""

        def run(
            argv: list[str],
            stdin: str | None = None,
            files: dict[str, str] | None = None,
            host: dict[str, Any] | None = None,
            stdin_b64: str | None = None,
            files_b64: dict[str, str] | None = None,
        ) -> dict[str, Any]:
            """``stdin``/``files`` as text (protocol 1's first form), or as bytes in base64
            (``stdin_b64``/``files_b64``: decoded here as the in-process CLI decodes)."""
            self._check_host(host or {})
            sent_files: dict[str, str | bytes | OSError] = dict(files or {})
            sent_stdin: str | bytes | None = stdin
            try:
                for path, value in (files_b64 or {}).items():  # "!reason": unreadable there
                    sent_files[path] = (
                        OSError(value[1:]) if value.startswith("!") else (base64.b64decode(value))
                    )
                if stdin_b64 is not None:
                    sent_stdin = base64.b64decode(stdin_b64)
            except ValueError:
                raise InvalidInput("not base64", subject="files_b64") from None
            from virtnet.cli import main as cli_main

            def writer(fd: int) -> stdio.Writer:
                def write(text: str) -> None:
                    if text:
                        conn.sendall(rpc.notification("output", {"fd": fd, "data": text}))

                return write

            set_daemon_context(
                DaemonContext(
                    api=self.methods.api,
                    files=sent_files,
                    stdin=sent_stdin,
                    subscribe=self.hub.subscription,
                    alive=lambda: _alive(conn),
                )
            )
            try:
                with stdio.redirected(writer(1), writer(2)):
                    try:
                        code = cli_main([str(a) for a in argv])
                    except SystemExit as exc:
                        code = exc.code if isinstance(exc.code, int) else 1
            finally:
                set_daemon_context(None)
            return {"exit_code": code}

        return run

    def _check_host(self, host: dict[str, Any]) -> None:
        ours = self.methods.host
        for key, option in (("netns", "--netns"), ("state_dir", "--state-dir")):
            wanted = host.get(key)
            if wanted is not None and wanted != ours[key]:
                raise InvalidInput(
                    f"virtnetd on {self.path} serves {key.replace('_', ' ')} {ours[key]}, "
                    f"not {wanted}",
                    subject=option,
                )
