"""Where a host's directories and its daemon's socket are: cheap enough for the thin client.

This module imports only :mod:`os` and :mod:`pathlib`: ``virtnet`` (the thin client) resolves
the daemon's socket with it before deciding whether it needs the heavy in-process CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/virtnet")
DEFAULT_RUN_DIR = Path("/run/virtnet")
SOCKET_NAME = "virtnetd.sock"


def resolve_dirs(
    state_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    netns: str | None = None,
) -> tuple[Path, Path]:
    """Argument, then ``VIRTNET_STATE_DIR``/``VIRTNET_RUN_DIR``, then the defaults (with a
    per-namespace sub-directory when ``netns`` is given)."""
    state = state_dir or os.environ.get("VIRTNET_STATE_DIR")
    run = run_dir or os.environ.get("VIRTNET_RUN_DIR")
    suffix = Path("netns", netns) if netns else Path()
    return (
        Path(state).absolute() if state else DEFAULT_STATE_DIR / suffix,
        Path(run).absolute() if run else DEFAULT_RUN_DIR / suffix,
    )


def socket_path(run_dir: Path) -> Path:
    """The daemon's socket: in the run dir of the host it serves."""
    return run_dir / SOCKET_NAME
