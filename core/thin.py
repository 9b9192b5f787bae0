"""``virtnet``: the thin client. It forwards the command line to virtnetd and prints what the
daemon's CLI writes, so output, errors and exit codes are those of :mod:`virtnet.cli` by
construction, while the datapath libraries stay loaded in the daemon.

With no daemon answering, it runs the same CLI in-process (``VIRTNET_DAEMON``: ``auto``
[default], ``never`` to always act in-process, ``require`` to fail without a daemon).
``lab``, ``conformance`` and ``graph`` always run in-process (see IN_PROCESS_COMMANDS).

Files named on the command line are read here, with the caller's rights, and sent along;
the daemon never opens a path a client names.

Speed is this module's job: a command's whole process must cost little more than the
interpreter's start (~9 ms here). So it imports nothing beyond builtin modules on the daemon
path: the socket is ``_socket``'s and JSON is read and written with ``_json``'s C functions
(:mod:`socket`, :mod:`json` and :mod:`typing` would each add 5-8 ms). The full-featured
client for programs is :class:`virtnet.client.Client`; both speak docs/protocol.md.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

#: commands that run here even with a daemon: whole labs, the conformance suite, and graph
#: (it may write a file the caller names, which the daemon never opens)
IN_PROCESS_COMMANDS = frozenset({"lab", "conformance", "graph"})
GLOBAL_VALUE_OPTIONS = ("--state-dir", "--run-dir", "--netns")
MAX_FILES = 16 << 20


def split_globals(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The host-choosing options before the command, and the rest (``-v`` stays)."""
    chosen: dict[str, str] = {}
    rest: list[str] = []
    args = list(argv)
    while args:
        arg = args[0]
        name, eq, value = arg.partition("=")
        if name in GLOBAL_VALUE_OPTIONS:
            args.pop(0)
            if not eq:
                if not args:
                    return chosen, [arg]  # let the real CLI report the missing value
                value = args.pop(0)
            chosen[name[2:].replace("-", "_")] = value
        elif arg in ("-v", "--verbose"):
            rest.append(args.pop(0))
        else:
            break
    return chosen, rest + args


def socket_for(chosen: dict[str, str]) -> str:
    """The daemon's socket, as :mod:`virtnet.paths` resolves it (without pathlib)."""
    run = chosen.get("run_dir") or os.environ.get("VIRTNET_RUN_DIR")
    if run:
        run = os.path.abspath(run)
    elif chosen.get("netns"):
        run = os.path.join("/run/virtnet/netns", chosen["netns"])
    else:
        run = "/run/virtnet"
    return os.path.join(run, "virtnetd.sock")


# --- JSON with _json's C functions ---------------------------------------------------------
def encode(value: Any) -> str:
    """JSON for what requests hold: None, bools, ints, strings, lists and dicts of them."""
    from _json import encode_basestring_ascii as quote

    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return str(quote(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{quote(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")


class _ScanContext:
    """What ``_json.make_scanner`` reads from :class:`json.JSONDecoder`."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))


def decode(text: str) -> Any:
    from _json import make_scanner

    value, end = make_scanner(_ScanContext())(text, 0)  # type: ignore[arg-type]
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


# --- the exchange --------------------------------------------------------------------------
class Unavailable(Exception):
    """No daemon answers (message for the user in args[0])."""


def connect(path: str) -> Any:
    import _socket
    import errno

    if len(os.fsencode(path)) >= 108:  # sun_path; Python would say only "path too long"
        raise Unavailable(f"cannot reach virtnetd on {path}: path too long for a socket")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PermissionError(
                f"permission denied: {path} is for root or the group virtnetd was "
                "configured with (--group)"
            ) from None
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            raise Unavailable(f"virtnetd is not running (no daemon on {path})") from None
        raise Unavailable(f"cannot reach virtnetd on {path}: {exc.strerror}") from None
    return sock


def exchange(sock: Any, params: dict[str, Any]) -> int:
    """Send the ``cli`` request, print the output notifications, return the exit code."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "cli", "params": params}
    sock.sendall(encode(request).encode() + b"\n")
    buffer = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            print("error: virtnetd closed the connection", file=sys.stderr)
            return 1
        buffer += chunk
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            message = decode(line.decode())
            if message.get("method") == "output":
                out = message["params"]
                stream = sys.stdout if out.get("fd", 1) == 1 else sys.stderr
                stream.write(out.get("data", ""))
                stream.flush()
            elif "result" in message:
                return int(message["result"].get("exit_code", 1))
            elif "error" in message:
                error = message["error"]
                print(f"error: {error.get('message')}", file=sys.stderr)
                return int((error.get("data") or {}).get("exit_code", 1))


def _b64(data: bytes) -> str:
    from binascii import b2a_base64  # builtin; the base64 module would import re (~4 ms)

    return b2a_base64(data, newline=False).decode()


def _attachments(args: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """Standard input and the files named on the command line, as bytes in base64: the
    daemon decodes them exactly as the in-process CLI would (same errors for bad text)."""
    stdin = None
    if "-" in args:
        stdin = _b64(sys.stdin.buffer.read(MAX_FILES + 1))
    files: dict[str, str] = {}
    total = 0
    for arg in args:
        if arg != "-" and arg not in files and os.path.exists(arg):
            try:
                with open(arg, "rb") as f:
                    data = f.read(MAX_FILES + 1)
            except OSError as exc:  # a directory, no permission: the daemon says so, as here
                files[arg] = "!" + (exc.strerror or "cannot read")
                continue
            total += len(data)
            if total <= MAX_FILES:
                files[arg] = _b64(data)
    return stdin, files


def _in_process(argv: Sequence[str]) -> int:
    if sys.flags.no_site:  # bin/virtnet starts without site: the full CLI needs all of it
        import site

        site.main()
    from virtnet.cli import main as cli_main

    return cli_main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen, rest = split_globals(argv)
    command = next((a for a in rest if not a.startswith("-")), None)
    mode = os.environ.get("VIRTNET_DAEMON", "auto")
    if mode not in ("auto", "never", "require"):
        print(f"error: VIRTNET_DAEMON: {mode!r} is not auto, never or require", file=sys.stderr)
        return 2
    if mode == "never" or command is None or command in IN_PROCESS_COMMANDS:
        return _in_process(argv)
    try:
        sock = connect(socket_for(chosen))
    except Unavailable as exc:
        if mode == "require":
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return _in_process(argv)
    except PermissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        stdin, files = _attachments(rest)
        state = chosen.get("state_dir") or os.environ.get("VIRTNET_STATE_DIR")
        # what the user chose explicitly: the daemon refuses if it serves another host
        host = {
            "state_dir": os.path.abspath(state) if state else None,
            "netns": chosen.get("netns"),
        }
        params = {"argv": rest, "stdin_b64": stdin, "files_b64": files, "host": host}
        return exchange(sock, params)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except OSError as exc:
        print(f"error: virtnetd: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
