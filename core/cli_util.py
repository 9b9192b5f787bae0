"""Helpers shared by the CLI's command modules: the lazily built API, input and output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from virtnet.errors import InvalidInput


class State:
    def __init__(
        self, state_dir: str | None, run_dir: str | None, netns: str | None, verbose: bool
    ):
        self.state_dir, self.run_dir, self.netns, self.verbose = state_dir, run_dir, netns, verbose
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            from virtnet.api import Virtnet
            from virtnet.host import enter_netns

            if self.netns:
                # The whole process moves, so plugins that run tools act in the namespace too.
                enter_netns(self.netns)
            self._api = Virtnet(self.state_dir, self.run_dir, self.netns)
        return self._api


def api() -> Any:
    state = click.get_current_context().find_object(State)
    assert state is not None
    return state.api


def read_input(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", subject="FILE") from None


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
