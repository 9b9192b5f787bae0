"""Helpers shared by the CLI's command modules: the lazily built API, input and output."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import click

from virtnet.errors import InvalidInput


@dataclass
class DaemonContext:
    """Set while the CLI runs inside virtnetd for a client: the daemon's API, the files and
    stdin the client sent (the daemon never opens a path a client names), the event stream."""

    api: Any
    files: dict[str, str | bytes | OSError] = field(default_factory=dict)
    stdin: str | bytes | None = None
    subscribe: Callable[[], AbstractContextManager[SimpleQueue[dict[str, Any]]]] | None = None
    alive: Callable[[], bool] = lambda: True


_daemon = threading.local()


def daemon_context() -> DaemonContext | None:
    """The context of the client this thread serves, or None in a plain CLI process."""
    return getattr(_daemon, "context", None)


def set_daemon_context(context: DaemonContext | None) -> None:
    _daemon.context = context


class State:
    def __init__(
        self, state_dir: str | None, run_dir: str | None, netns: str | None, verbose: bool
    ):
        self.state_dir, self.run_dir, self.netns, self.verbose = state_dir, run_dir, netns, verbose
        self._api: Any = None

    @property
    def api(self) -> Any:
        served = daemon_context()
        if served is not None:
            return served.api
        if self._api is None:
            from virtnet.api import Virtnet
            from virtnet.host import enter_netns

            if self.netns is not None:
                # The whole process moves, so plugins that run tools act in the namespace too.
                enter_netns(self.netns)
            self._api = Virtnet(self.state_dir, self.run_dir, self.netns)
        return self._api


def api() -> Any:
    state = click.get_current_context().find_object(State)
    assert state is not None
    return state.api


def read_input(path: str) -> str:
    served = daemon_context()
    if served is not None:
        sent = served.stdin if path == "-" else served.files.get(path)
        if sent is None:
            raise InvalidInput(f"cannot read {path}: No such file or directory", subject="FILE")
        if isinstance(sent, OSError):
            raise InvalidInput(f"cannot read {path}: {sent}", subject="FILE")
        return decode_text(sent, path) if isinstance(sent, bytes) else sent
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", subject="FILE") from None
    return decode_text(data, path)


def decode_text(data: bytes, source: str) -> str:
    """Definitions are UTF-8 (a byte-order mark is allowed, and UTF-16 with its mark);
    anything else is refused with the offset of the first bad byte."""
    import codecs

    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, data = "utf-16", data
    else:
        encoding, data = "utf-8", data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{source} is not {encoding.upper()} text (byte {exc.start})", subject="FILE"
        ) from None


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """virsh's table layout: a leading space, columns padded, a dashed rule."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return " " + "   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

    click.echo(line(headers).rstrip())
    click.echo("-" * (sum(widths) + 3 * len(widths)))
    for row in rows:
        click.echo(line(row).rstrip())
    click.echo()


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


class NetworkName(click.ParamType):  # type: ignore[type-arg]
    """A network name argument: checked by libvirt's naming rules before anything is looked
    up, so ``../../etc/passwd`` is bad input (exit 2), not a missing network."""

    name = "NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from virtnet.model.names import check_network_name

        return check_network_name(
            str(value), subject=param.human_readable_name if param else "NAME"
        )

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        """The networks of the host the command line chose, read without changing
        anything (the state files are opened read-only; none yet: no names)."""
        from click.shell_completion import CompletionItem

        state = ctx.find_object(State)
        if state is None:  # completing: the group's callback has not run, its options have
            top = ctx.find_root().params
            state = State(top.get("state_dir"), top.get("run_dir"), top.get("netns"), False)
        names = known_networks(state)
        return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def known_networks(state: State) -> list[str]:
    import sqlite3

    from virtnet.paths import resolve_dirs

    state_dir, run_dir = resolve_dirs(state.state_dir, state.run_dir, state.netns)
    names: set[str] = set()
    for db, table in ((state_dir / "virtnet.db", "networks"), (run_dir / "runtime.db", "active")):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                names |= {row[0] for row in conn.execute(f"SELECT name FROM {table}")}
        except sqlite3.Error:
            continue  # not there (nothing defined yet), or not readable by this user
    return sorted(names)


NETWORK = NetworkName()
