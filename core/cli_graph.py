"""``virtnet graph``: the host's virtual networks as a diagram (:mod:`virtnet.graph`)."""

from __future__ import annotations

import sys

import click

from virtnet.cli_util import NETWORK, api
from virtnet.graph import FORMATS, gather, render, to_dot


@click.command("graph")
@click.argument("names", nargs=-1, type=NETWORK, metavar="[NETWORK]...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="dot (Graphviz's source), svg or png [from -o's suffix, else dot].")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file [standard output].")  # fmt: skip
def graph_command(names: tuple[str, ...], fmt: str | None, output: str | None) -> None:
    """Draw the host's networks: uplinks, bridges, modes, subnets, ports, leases, guards."""
    if fmt is None:
        suffix = output.rpartition(".")[2].lower() if output and "." in output else "dot"
        fmt = suffix if suffix in FORMATS else "dot"
    if fmt == "png" and output is None and sys.stdout.isatty():
        raise click.UsageError("a PNG on a terminal: give -o FILE (or --format svg|dot)")
    drawing = render(to_dot(gather(api(), names)), fmt)
    if output:
        with open(output, "wb") as out:  # the caller's own process: the thin client runs it here
            out.write(drawing)
        click.echo(f"wrote {output} ({fmt})", err=True)
    else:
        sys.stdout.buffer.write(drawing)
