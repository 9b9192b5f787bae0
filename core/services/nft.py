"""nftables through libnftables: one transaction per call, in the caller's network namespace.

libnftables runs a whole command buffer as one atomic transaction, so a caller hands over
every statement of an operation at once: the ruleset changes completely or not at all.
Values that reach a rule (interface names) pass :func:`quote` first.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from virtnet.errors import InvalidInput, OperationFailed, Unsupported
from virtnet.services.nft_elements import NftElements
from virtnet.services.nft_raw import compile_script

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
        #: a network's statements go as raw netlink (:mod:`virtnet.services.nft_raw`):
        #: libnftables reloads every chain of the ruleset before each command.
        #: ``VIRTNET_NFT_RAW=0`` sends everything through libnftables.
        self._raw = NftElements() if os.environ.get("VIRTNET_NFT_RAW", "1") != "0" else None

    def run(self, script: str, what: str) -> None:
        """Run ``script`` (statements separated by newlines) as one transaction."""
        if self.run_raw(script):
            return
        with self._lock:
            rc, _out, err = self._nft.cmd(script)
        if rc != 0:
            raise OperationFailed(f"nftables rejected {what}: {_first_error(err)}")

    def try_run(self, script: str) -> bool:
        if self.run_raw(script):
            return True
        with self._lock:
            rc, _out, _err = self._nft.cmd(script)
        return bool(rc == 0)

    def run_raw(self, script: str) -> bool:
        """Whether ``script`` went in as one raw batch. False when it has a shape nft_raw does
        not know or the kernel refused it: :meth:`run` and :meth:`try_run` then hand it to
        libnftables, which says why if it fails too."""
        messages = compile_script(script) if self._raw is not None else None
        if self._raw is None or messages is None:
            return False
        try:
            with self._lock:
                self._raw.batch([(m.kind, m.flags, m.family, m.body) for m in messages])
        except OSError:  # the kernel refused it (NftElementError), or the socket failed
            return False
        return True

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
