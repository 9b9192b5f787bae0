"""nftables through libnftables: one transaction per call, in the caller's network namespace.

libnftables runs a whole command buffer as one atomic transaction, so a caller hands over
every statement of an operation at once: the ruleset changes completely or not at all.
Values that reach a rule (interface names) pass :func:`quote` first.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from virtnet.errors import InvalidInput, OperationFailed, Unsupported

_FORBIDDEN_IN_STRING = set('"\\*')


def quote(ifname: str, subject: str = "interface name") -> str:
    """An interface name as an nftables string literal.

    ``"`` and ``\\`` cannot be escaped in nft's grammar and a trailing ``*`` makes a wildcard,
    so names holding them are refused rather than passed through.
    """
    if not ifname or _FORBIDDEN_IN_STRING & set(ifname) or not ifname.isprintable():
        raise InvalidInput(
            f"{ifname!r} cannot be used in firewall rules (no quotes, backslashes or '*')",
            subject=subject,
        )
    return f'"{ifname}"'


def quote_prefix(prefix: str, subject: str = "interface name") -> str:
    """Every interface whose name starts with ``prefix``, as an nftables wildcard literal
    (``"vp1a2b3*"``); ``prefix`` itself passes :func:`quote`'s checks."""
    return quote(prefix, subject)[:-1] + '*"'


class Nft:
    """A libnftables context bound to the namespace of the thread that created it."""

    def __init__(self) -> None:
        try:
            import nftables
        except ImportError:
            raise Unsupported(
                "the nftables Python bindings are missing: install Debian's python3-nftables "
                "and use a venv made with --system-site-packages"
            ) from None
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._lock = threading.Lock()

    def run(self, script: str, what: str) -> None:
        """Run ``script`` (statements separated by newlines) as one transaction."""
        with self._lock:
            rc, _out, err = self._nft.cmd(script)
        if rc != 0:
            raise OperationFailed(f"nftables rejected {what}: {_first_error(err)}")

    def try_run(self, script: str) -> bool:
        with self._lock:
            rc, _out, _err = self._nft.cmd(script)
        return bool(rc == 0)

    def query(self, command: str) -> list[dict[str, Any]]:
        """A ``list`` command's JSON objects; an empty list if the object does not exist."""
        with self._lock:
            rc, out, _err = self._nft.cmd(command)
        if rc != 0 or not out:
            return []
        return list(json.loads(out).get("nftables", []))


def _first_error(err: str) -> str:
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["unknown error"])[0]
