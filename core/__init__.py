"""virtnet: virtual networks for VMs and containers on a Linux host.

The public API for embedding stacks is :class:`virtnet.api.Virtnet` (re-exported here), the
model in :mod:`virtnet.model`, the errors in :mod:`virtnet.errors`, and for backend authors
the contract in :mod:`virtnet.hookspecs` with :mod:`virtnet.plan` and :mod:`virtnet.backend`.
Importing this package is cheap: the API and its datapath libraries load on first use.
"""

from __future__ import annotations

from virtnet.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OperationFailed,
    Unsupported,
    VirtnetError,
)

TYPE_CHECKING = False  # not typing's: importing typing costs the thin client ~8 ms
if TYPE_CHECKING:
    from typing import Any

    from virtnet.api import Virtnet
    from virtnet.hookspecs import hookimpl

    __version__: str


def __getattr__(name: str) -> Any:
    """Load on first use: the thin client imports this package and must stay fast (reading
    the installed version costs ~25 ms, pluggy and the API much more)."""
    if name == "Virtnet":
        from virtnet.api import Virtnet

        return Virtnet
    if name == "hookimpl":
        from virtnet.hookspecs import hookimpl

        return hookimpl
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("virtnet")
        except PackageNotFoundError:  # running from a source tree
            return "0.0.0"
    raise AttributeError(name)


__all__ = [
    "Conflict",
    "InvalidInput",
    "NotFound",
    "OperationFailed",
    "Unsupported",
    "Virtnet",
    "VirtnetError",
    "__version__",
    "hookimpl",
]
