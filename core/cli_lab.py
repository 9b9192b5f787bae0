"""``virtnet lab up|check|down|run FILE``: the seed topology, or any lab file."""

from __future__ import annotations

import sys
import time

import click


@click.group("lab")
def lab() -> None:
    """Build a whole topology from a lab file and check who reaches whom (docs/lab.md)."""


@lab.command("up")
@click.argument("file")
@click.option("--backend", help="Use each network's variant for this backend, where it has one.")
def lab_up(file: str, backend: str | None) -> None:
    """Build the lab (namespaces, networks, guests); lab down removes it."""
    from virtnet.lab import Builder, down, load
    from virtnet.progress import Progress

    spec = load(file)
    click.echo(f"lab {spec.name}: up" + (f" (backend {backend})" if backend else ""))
    builder = Builder(spec, backend, progress := Progress(f"lab {spec.name}"))
    progress.total = builder.steps()
    with progress:
        try:
            addresses = builder.up()
        except BaseException:
            progress.say("  failed half-way: removing what was made")
            down(spec.name, progress)
            raise
    for name in sorted(addresses):
        click.echo(f"  {name:<16} {addresses[name]}")


REPORT = click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the topology, the matrix and the timings as one HTML page.",
)


@lab.command("check")
@click.argument("file")
@REPORT
@click.option("--backend", hidden=True)  # lab run passes it on for the report's topology
def lab_check(file: str, report: str | None = None, backend: str | None = None,
              timings: dict[str, float] | None = None) -> None:  # fmt: skip
    """Run the lab's connectivity matrix; exit 1 on any mismatch."""
    from virtnet.lab import check, load, table

    spec = load(file)
    started = time.monotonic()
    outcomes = check(spec)
    for line in table(outcomes, color=sys.stdout.isatty()):
        click.echo(line)
    bad = sum(not o.ok for o in outcomes)
    click.echo(f"{len(outcomes) - bad}/{len(outcomes)} as expected")
    if report:
        from virtnet.lab.report import report_html

        spent = {**(timings or {}), "check": time.monotonic() - started}
        with open(report, "w", encoding="utf-8") as out:
            out.write(report_html(spec, outcomes, backend, spent))
        click.echo(f"report: {report}")
    if bad:
        sys.exit(1)


@lab.command("down")
@click.argument("file")
def lab_down(file: str) -> None:
    """Remove everything the lab made (also after a killed or failed lab up)."""
    from virtnet.lab import down, load
    from virtnet.progress import Progress

    name = load(file).name
    with Progress(f"lab {name}: down") as progress:
        down(name, progress)


@lab.command("run")
@click.argument("file")
@click.option("--backend", help="Use each network's variant for this backend, where it has one.")
@REPORT
@click.pass_context
def lab_run(ctx: click.Context, file: str, backend: str | None, report: str | None) -> None:
    """lab up, lab check, lab down; exits with check's status."""
    from virtnet.lab import down, load
    from virtnet.progress import Progress

    spec = load(file)
    started = time.monotonic()
    try:
        ctx.invoke(lab_up, file=file, backend=backend)
        up = {"up": time.monotonic() - started}
        ctx.invoke(lab_check, file=file, report=report, backend=backend, timings=up)
    finally:
        with Progress(f"lab {spec.name}: down") as progress:
            down(spec.name, progress)
