"""``virtnet conformance``: a thin entry to the conformance suite (virtnet.testing.conformance)."""

from __future__ import annotations

import sys

import click

from virtnet.cli_util import api, emit_json
from virtnet.errors import Unsupported


@click.command("conformance")
@click.argument("backend")
@click.option("--json", "as_json", is_flag=True, help="Every check's outcome as JSON.")
@click.option("-k", "select", metavar="EXPR", help="Only the checks matching EXPR (pytest -k).")
@click.option("--verbose", "verbose", is_flag=True, help="pytest's own report as it runs.")
def conformance_command(backend: str, as_json: bool, select: str | None, verbose: bool) -> None:
    """Check an installed BACKEND against the backend contract on this kernel (root; in
    throw-away namespaces): planning, rollback at every step, crash recovery, drift, traffic
    for each forward mode it claims, teardown, ownership. Prints 'N passed, M failed'; exit 1
    if any failed."""
    try:
        from virtnet.testing.conformance import run
    except ImportError as exc:  # pytest is the test extra's
        raise Unsupported(f"the conformance suite needs pytest: pip install 'virtnet[test]' "
                          f"({exc})") from None  # fmt: skip
    usable = {b.name for b in api().backends()}
    if backend not in usable:
        raise Unsupported(
            f"backend {backend!r} is not installed or not usable (usable: "
            f"{', '.join(sorted(usable)) or 'none'}; see virtnet drivers)",
            subject="BACKEND",
        )
    result = run(backend, select=select, verbose=verbose)
    if as_json:
        emit_json(result)
    else:
        for check in result["checks"]:
            if check["outcome"] != "passed":
                reason = f": {check['reason']}" if check["reason"] else ""
                click.echo(f"{check['outcome']}: {check['check']}{reason}")
        click.echo(f"{result['passed']} passed, {result['failed']} failed"
                   + (f" ({result['skipped']} skipped)" if result["skipped"] else ""))  # fmt: skip
    if result["failed"] or result["exit_code"] not in (0, 5):
        sys.exit(1)
