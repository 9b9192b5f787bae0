"""The plug socket: unprivileged VMs get a guarded tap on a network the ACL lets them use.

QEMU's bridge helper protocol gives a VM a tap without root (``-netdev bridge,br=NET,
helper=virtnet-bridge-helper``). The helper runs as the VM's user; it connects here, asks for
a tap on NET with the guest's MAC, and gets the tap's file descriptor back (``SCM_RIGHTS``),
which it hands to QEMU. virtnetd knows who asks (``SO_PEERCRED``), checks the ACL
(:mod:`virtnet.plug_acl`), makes the port through the API (anti-spoofing on, always: the caller
is not trusted) and lets it go when no process holds the tap any more
(:meth:`virtnet.api.Virtnet.release_closed_ports`).

The socket is world-connectable (0666) on purpose: the ACL decides, per user and network. It
speaks one JSON-RPC 2.0 method, ``plug_tap``, one request per connection (docs/protocol.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from virtnet import plug_acl, rpc
from virtnet.daemon.listener import Listener
from virtnet.errors import InvalidInput, VirtnetError
from virtnet.model.names import check_mac
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort

log = logging.getLogger("virtnetd")

#: A request is a network name, a MAC and a flag: far below this.
MAX_PLUG_REQUEST = 4096
#: A client that connects and says nothing is dropped after this long.
REQUEST_TIMEOUT_S = 10.0
#: Connections served at once; more are refused at once (anyone may connect: a flood of idle
#: connections must not pile up threads).
MAX_CONNECTIONS = 32


class PlugServer(Listener):
    def __init__(self, path: Path, acl: Path, api: Any) -> None:
        super().__init__(path)
        self.acl, self.api = acl, api  # api: the daemon's Serialized API
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def bind(self) -> None:
        if not self.path.parent.is_dir():
            raise InvalidInput(f"{self.path.parent} is not a directory", subject="--plug-socket")
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # anyone may ask; the ACL answers
        sock.listen(64)
        self.sock = sock

    def accepted(self, conn: socket.socket) -> None:
        if not self.slots.acquire(blocking=False):
            with conn, contextlib.suppress(OSError):
                conn.sendall(rpc.error(None, rpc.INVALID_REQUEST, "busy: try again"))
            return
        threading.Thread(target=self._served, args=(conn,), daemon=True).start()

    def _served(self, conn: socket.socket) -> None:
        try:
            self._connection(conn)
        finally:
            self.slots.release()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, gid = struct.unpack("3i", creds)
            ident: Any = None
            try:
                ident, params = _read_request(conn)
                port, fd = self.plug(params, uid, gid)
            except VirtnetError as exc:
                log.info("plug request of uid %d (pid %d) refused: %s", uid, pid, exc)
                with contextlib.suppress(OSError):
                    conn.sendall(rpc.error_from_exception(ident, exc))
                return
            except OSError as exc:
                log.debug("plug connection ended: %s", exc)
                return
            try:
                conn.settimeout(REQUEST_TIMEOUT_S)  # the answer's own time, not the request's
                answer = {"port": port.uuid, "ifname": port.attachment.ifname, "mac": port.mac}
                socket.send_fds(conn, [rpc.result(ident, answer)], [fd])
                log.info("port %s (%s) for uid %d on %s", port.uuid, port.attachment.ifname,
                         uid, port.network)  # fmt: skip
            except OSError as exc:  # the asker left: its port goes with our descriptor
                log.info("plug of uid %d: the client left (%s)", uid, exc)
                os.close(fd)
                with contextlib.suppress(VirtnetError):
                    self.api.release_closed_ports(port.network)
                return
            os.close(fd)  # the client holds it now (the kernel keeps it open in flight)

    def plug(self, params: dict[str, Any], uid: int, gid: int) -> tuple[NetworkPort, int]:
        network = params.get("network")
        if not isinstance(network, str) or not network:
            raise InvalidInput("a network name is required", subject="network")
        mac = params.get("mac")
        if mac is not None and not isinstance(mac, str):
            raise InvalidInput("must be a string", subject="mac")
        vnet_hdr = params.get("vnet_hdr", True)
        if not isinstance(vnet_hdr, bool):
            raise InvalidInput("must be true or false", subject="vnet_hdr")
        unknown = set(params) - {"network", "mac", "vnet_hdr"}
        if unknown:
            raise InvalidInput(f"unknown parameter {sorted(unknown)[0]!r}", subject="params")
        plug_acl.check(self.acl, network, uid, gid)
        port = NetworkPort(
            network=network,
            mac=check_mac(mac, "mac") if mac else None,
            attachment=Attachment(AttachmentKind.TAP, owner_uid=uid),
        )
        made: tuple[NetworkPort, int] = self.api.plug_tap(network, port, vnet_hdr=vnet_hdr)
        return made


def _read_request(conn: socket.socket) -> tuple[Any, dict[str, Any]]:
    """One request line, whole within :data:`REQUEST_TIMEOUT_S` (a byte now and then does
    not keep a slot: the deadline is for the line, not for each read)."""
    data = b""
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise InvalidInput(
                f"no whole request within {REQUEST_TIMEOUT_S:g} s", subject="request"
            )
        conn.settimeout(left)
        chunk = conn.recv(MAX_PLUG_REQUEST)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_PLUG_REQUEST:
            raise InvalidInput(f"a request is at most {MAX_PLUG_REQUEST} bytes", subject="request")
    try:
        message = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        raise InvalidInput("not JSON", subject="request") from None
    if not isinstance(message, dict) or message.get("method") != "plug_tap":
        raise InvalidInput("the plug socket answers plug_tap only", subject="method")
    params = message.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInput("must be an object", subject="params")
    return message.get("id"), params
