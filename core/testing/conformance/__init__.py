"""``virtnet conformance BACKEND``: the backend contract, checked against an installed backend.

The checks are a pytest module shipped in the package (:mod:`.test_backend`), with a plugin
(:mod:`.plugin`) that reads the backend's description and builds throw-away worlds. This
entry runs them and prints ``N passed, M failed`` (and with ``--json`` every check's outcome).
Needs root and the test extra (``pip install virtnet[test]``).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any


def run(backend: str, *, select: str | None = None, verbose: bool = False) -> dict[str, Any]:
    """Run the suite on ``backend``; returns the summary and every check's outcome."""
    import pytest

    from virtnet.testing.conformance.plugin import Results

    results = Results()
    here = Path(__file__).parent
    args = [
        str(here / "test_backend.py"),
        "-c", os.devnull,  # not the caller's pytest settings: the suite brings its own
        "--rootdir", str(here),
        "-p", "virtnet.testing.conformance.plugin",
        "-p", "no:cacheprovider",
        "--virtnet-backend", backend,
        "-q",
    ]  # fmt: skip
    if select:
        args += ["-k", select]
    if verbose:
        code = pytest.main(args, plugins=[results])
    else:
        with contextlib.redirect_stdout(io.StringIO()):  # the summary says what counts
            code = pytest.main(args, plugins=[results])
    return {
        "backend": backend,
        "passed": results.count("passed"),
        "failed": results.count("failed"),
        "skipped": results.count("skipped"),
        "checks": results.checks,
        "exit_code": int(code),
    }


__all__ = ["run"]
