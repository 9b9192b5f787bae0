"""virtnet: virtual networks for VMs and containers on a Linux host.

The public API for embedding stacks is :class:`virtnet.api.Virtnet` (re-exported here), the
model in :mod:`virtnet.model`, the errors in :mod:`virtnet.errors`, and for backend authors
the contract in :mod:`virtnet.hookspecs` with :mod:`virtnet.plan` and :mod:`virtnet.backend`.
Importing this package is cheap: the API and its datapath libraries load on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from virtnet.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    OperationFailed,
    Unsupported,
    VirtnetError,
)
from virtnet.hookspecs import hookimpl

try:
    __version__ = version("virtnet")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from virtnet.api import Virtnet


def __getattr__(name: str) -> Any:
    if name == "Virtnet":
        from virtnet.api import Virtnet

        return Virtnet
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
