"""``virtnet``: the thin client. It forwards the command line to virtnetd and prints what the
daemon's CLI writes, so output, errors and exit codes are those of :mod:`virtnet.cli` by
construction; the datapath libraries stay loaded in the daemon (~20 ms per command instead
of ~300 ms of imports).

With no daemon answering, it runs the same CLI in-process (``VIRTNET_DAEMON``: ``auto``
[default], ``never`` to always act in-process, ``require`` to fail without a daemon).
``lab`` always runs in-process: it builds whole throw-away hosts with their own processes.

Files named on the command line are read here, with the caller's rights, and sent along;
the daemon never opens a path a client names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

IN_PROCESS_COMMANDS = frozenset({"lab"})
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


def _attachments(args: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    stdin = sys.stdin.read() if "-" in args else None
    files: dict[str, str] = {}
    total = 0
    for arg in args:
        if arg != "-" and arg not in files and os.path.isfile(arg):
            try:
                with open(arg, encoding="utf-8") as f:
                    text = f.read(MAX_FILES + 1)
            except (OSError, UnicodeDecodeError):
                continue  # the daemon's CLI reports "cannot read" for it
            total += len(text)
            if total <= MAX_FILES:
                files[arg] = text
    return stdin, files


def _in_process(argv: Sequence[str]) -> int:
    from virtnet.cli import main as cli_main

    return cli_main(list(argv))


def _write(fd: int, data: str) -> None:
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.write(data)
    stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen, rest = split_globals(argv)
    command = next((a for a in rest if not a.startswith("-")), None)
    mode = os.environ.get("VIRTNET_DAEMON", "auto")
    if mode == "never" or command is None or command in IN_PROCESS_COMMANDS:
        return _in_process(argv)

    from virtnet.client import Client, DaemonNotRunning
    from virtnet.errors import VirtnetError
    from virtnet.paths import resolve_dirs, socket_path

    state_dir, run_dir = resolve_dirs(
        chosen.get("state_dir"), chosen.get("run_dir"), chosen.get("netns")
    )
    try:
        client = Client.connect(socket_path(run_dir))
    except DaemonNotRunning as exc:
        if mode == "require":
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        return _in_process(argv)
    except VirtnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code

    def output(method: str, params: dict[str, Any]) -> None:
        if method == "output":
            _write(int(params.get("fd", 1)), str(params.get("data", "")))

    try:
        with client:
            stdin, files = _attachments(rest)
            # what the user chose explicitly: the daemon refuses if it serves another host
            host = {
                "state_dir": str(state_dir)
                if "state_dir" in chosen or os.environ.get("VIRTNET_STATE_DIR")
                else None,
                "netns": chosen.get("netns"),
            }
            result = client.call("cli", output, argv=rest, stdin=stdin, files=files, host=host)
            return int(result.get("exit_code", 1)) if isinstance(result, dict) else 1
    except VirtnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
