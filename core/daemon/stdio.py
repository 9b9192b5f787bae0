"""Per-thread standard output: the CLI runs in the daemon's connection threads at once, and
each thread's ``click.echo`` must reach its own client, not the daemon's terminal."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Writer = Callable[[str], None]
_local = threading.local()


class ThreadStream(io.TextIOBase):
    """Writes go to the calling thread's writer, if it set one, else to ``fallback``."""

    def __init__(self, fd: int, fallback: TextIO) -> None:
        self.fd = fd
        self.fallback = fallback

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes with b"" to tell text from binary
            raise TypeError("write() argument must be str")
        writers: dict[int, Writer] | None = getattr(_local, "writers", None)
        if writers is None:
            return self.fallback.write(text)
        writers[self.fd](text)
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "writers", None) is None:
            self.fallback.flush()


def install() -> None:
    """Replace ``sys.stdout``/``sys.stderr`` once, at daemon start."""
    if not isinstance(sys.stdout, ThreadStream):
        sys.stdout = ThreadStream(1, sys.stdout)
    if not isinstance(sys.stderr, ThreadStream):
        sys.stderr = ThreadStream(2, sys.stderr)


@contextmanager
def redirected(stdout: Writer, stderr: Writer) -> Iterator[None]:
    """Within this block, this thread's output goes to the two writers."""
    _local.writers = {1: stdout, 2: stderr}
    try:
        yield
    finally:
        _local.writers = None
