"""``virtnet-bridge-helper``: QEMU's bridge helper, with virtnet networks for bridges.

QEMU runs a bridge helper for ``-netdev bridge,br=NAME,helper=PATH`` (and ``-nic bridge``)
as ``PATH --use-vnet --fd=N --br=NAME``, and expects a tap's file descriptor back on the unix
socket N (``SCM_RIGHTS``), then the helper's exit status 0. qemu-bridge-helper is set-uid
root and makes the tap itself; this helper holds no privilege: it asks virtnetd's plug socket
(:mod:`virtnet.daemon.plug`) for a port on network NAME, which checks the ACL, makes a guarded
tap, and sends its descriptor, which the helper passes on.

The guest's MAC: anti-spoofing lets through only the port's MAC, so the port must have the
NIC's. QEMU does not tell helpers; this one reads it from QEMU's command line (its parent's
``/proc/PID/cmdline``: the ``-device ...,netdev=ID,mac=`` of the ``-netdev bridge,id=ID,
br=NAME``, or ``-nic bridge,br=NAME,mac=``), or takes ``--mac`` (a helper string with
arguments: ``helper="virtnet-bridge-helper --mac=52:54:00:..."``; QEMU runs it through
``sh -c`` then). Errors are one line on stderr, which QEMU shows, and exit status 1.

Standard library only: it runs at every VM start.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
from collections.abc import Sequence

DEFAULT_SOCKET = "/run/virtnet/virtnetd-plug.sock"
USAGE = "virtnet-bridge-helper [--use-vnet] --br=NETWORK --fd=FD [--mac=MAC] [--socket=PATH]"


class HelperError(Exception):
    pass


def _options(argv: Sequence[str]) -> dict[str, str]:
    known = {"--use-vnet", "--fd", "--br", "--mac", "--socket"}
    found: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key not in known:
            raise HelperError(f"unknown argument {arg!r} (usage: {USAGE})")
        found[key] = value if sep else "yes"
    for needed in ("--br", "--fd"):
        if not found.get(needed):
            raise HelperError(f"{needed} is required (QEMU passes it)")
    return found


def _fields(value: str) -> dict[str, str]:
    """QEMU's ``key=value,...`` option syntax (or its JSON form) as a dict; ``,,`` is an
    escaped comma. The first bare word is the type (``bridge``, ``virtio-net-pci``)."""
    if value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    fields, parts, current = {}, [], ""
    i = 0
    while i < len(value):
        if value[i] == "," and value[i + 1 : i + 2] == ",":
            current += ","
            i += 2
            continue
        if value[i] == ",":
            parts.append(current)
            current = ""
        else:
            current += value[i]
        i += 1
    parts.append(current)
    for n, part in enumerate(parts):
        key, sep, val = part.partition("=")
        if sep:
            fields[key] = val
        elif n == 0:
            fields["type"] = key
    return fields


def mac_from_cmdline(args: list[str], network: str) -> str | None:
    """The MAC of the NIC whose backend is ``-netdev bridge,br=network`` (or ``-nic``); None
    when the command line does not say, or names several NICs on the network."""
    options = list(itertools.pairwise(args))
    netdevs = {
        f.get("id", ""): f
        for opt, value in options
        if opt in ("-netdev", "--netdev") and (f := _fields(value)).get("type") == "bridge"
    }
    ids = {i for i, f in netdevs.items() if f.get("br", "br0") == network}
    macs = []
    for opt, value in options:
        f = _fields(value)
        nic = opt in ("-nic", "--nic") and f.get("type") == "bridge"
        on_network = (
            f.get("netdev") in ids
            if opt in ("-device", "--device")
            else (nic and f.get("br", "br0") == network)
        )
        if on_network:
            macs.append(f.get("mac"))
    if len(macs) != 1 or not macs[0]:
        return None
    return macs[0]


def _qemu_cmdline() -> list[str]:
    """QEMU's command line: the parent's, or the grandparent's when QEMU ran this helper
    through ``sh -c`` (a helper string with arguments)."""
    pid = os.getppid()
    for _ in range(3):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            with open(f"/proc/{pid}/stat", "rb") as f:
                parent = int(f.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return []
        if any(a in ("-netdev", "--netdev", "-nic", "--nic") for a in args):
            return args
        pid = parent
    return []


def ask(path: str, network: str, mac: str, vnet_hdr: bool) -> tuple[dict[str, str], int]:
    """The plug socket's answer (port, ifname, mac) and the tap's descriptor."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "plug_tap",
               "params": {"network": network, "mac": mac, "vnet_hdr": vnet_hdr}}  # fmt: skip
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(30)
        try:
            sock.connect(path)
        except OSError as exc:
            raise HelperError(f"cannot reach virtnetd's plug socket {path}: {exc.strerror} "
                              "(is virtnetd running with a plug ACL?)") from None  # fmt: skip
        sock.sendall(json.dumps(request).encode() + b"\n")
        data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
        while not data.endswith(b"\n"):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    try:
        answer = json.loads(data)
    except ValueError:
        raise HelperError("virtnetd's plug socket answered nonsense") from None
    if "error" in answer:
        for fd in fds:
            os.close(fd)
        raise HelperError(str(answer["error"].get("message", "refused")))
    if len(fds) != 1:
        raise HelperError("virtnetd sent no tap")
    return answer["result"], fds[0]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = _options(sys.argv[1:] if argv is None else argv)
        network = options["--br"]
        mac = options.get("--mac") or mac_from_cmdline(_qemu_cmdline(), network)
        if not mac:
            raise HelperError(
                f"which MAC has the NIC on {network}? give its -device (or -nic) a mac=, or "
                "the helper --mac= (anti-spoofing lets only the port's MAC through)"
            )
        try:
            qemu = socket.socket(fileno=int(options["--fd"]))
        except (ValueError, OSError) as exc:
            raise HelperError(f"--fd={options['--fd']}: not QEMU's socket ({exc})") from None
        path = options.get("--socket") or os.environ.get("VIRTNET_PLUG_SOCKET", DEFAULT_SOCKET)
        _answer, fd = ask(path, network, mac, "--use-vnet" in options)
        try:
            socket.send_fds(qemu, [b"\0"], [fd])  # qemu-bridge-helper's one byte and the fd
        finally:
            os.close(fd)
            qemu.detach()
        return 0
    except HelperError as exc:
        print(f"virtnet-bridge-helper: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
