"""A live progress line for long commands on a terminal, and nothing when output is piped.

``lab up``, ``net-port-create --count`` and the benchmarks take seconds to minutes. A user at
a terminal wants to see where they are; a script reading their output wants the results only.
So the step under way is drawn on one line of stderr that rewrites itself (a bar, the count,
the time spent, what is being done) when stderr is a terminal, and is not written at all
otherwise; results go to stdout through :meth:`Progress.say`, which lifts them above the line.
No library: click's own bar cannot print results above itself, and the line is a few lines of
code (the project keeps its dependencies to what Debian ships for the datapath).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

#: Redraws at most this often: a bulk operation of 10,000 quick steps must not spend its time
#: writing to the terminal.
REDRAW_S = 0.05
#: A step that lasts (a DHCP lease, a benchmark's phase) still shows its time going up.
TICK_S = 0.5
BAR_WIDTH = 20


class Progress:
    """``with Progress("lab arch", total=9) as p: p.step("network vlan1"); p.say("made it")``."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.out = out if out is not None else sys.stdout
        self.live = _is_terminal(self.stream)
        self.done = -1  # step() starts the first step: then none is done yet
        self.what = ""
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def step(self, what: str) -> None:
        """The previous step is done; ``what`` is under way now."""
        with self._lock:
            self.done += 1
            self.what = what
            self._draw(force=self.done == 0 or self.done == self.total)
        if self.live and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def say(self, line: str) -> None:
        """A result: a line of its own on stdout, always (above the live line on a terminal)."""
        with self._lock:
            self._clear()
            self.out.write(line + "\n")
            self.out.flush()
            self._draw(force=True)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            self._clear()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                self._draw(force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def line(self, width: int) -> str:
        """The live line as drawn, at most ``width`` characters."""
        spent = f"{time.monotonic() - self.started:.1f}s"
        if self.total:
            filled = BAR_WIDTH * max(0, min(self.done, self.total)) // self.total
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            text = f"{self.label} [{bar}] {min(self.done + 1, self.total)}/{self.total}"
        else:
            text = f"{self.label} [{max(self.done, 0) + 1}]"
        text = f"{text} {spent} {self.what}"
        return text if len(text) <= width else text[: max(0, width - 1)] + "…"

    def _draw(self, force: bool = False) -> None:
        if not self.live or self.done < 0:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_S:
            return
        self._drawn_at = now
        width = shutil.get_terminal_size((80, 24)).columns - 1
        self.stream.write("\r\x1b[K" + self.line(width))
        self.stream.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except ValueError:  # closed
        return False
