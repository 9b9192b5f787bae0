"""``virtnet gc``: remove what carries virtnet's label but no record owns (:mod:`virtnet.gc`)."""

from __future__ import annotations

import sys

import click

from virtnet.cli_util import api, emit_json


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gc_command(dry_run: bool, as_json: bool) -> None:
    """Remove virtnet's orphaned objects (links, Open vSwitch bridges and ports, nftables
    chains, dnsmasq processes): only labelled ones no network or port record owns; and this
    host's ports of shared (OVN) networks stopped from another host. Exit 1 if something
    could not be removed."""
    unplugged = api().release_stale_ports(dry_run=dry_run)  # of shared networks stopped
    orphans, problems = api().collect_garbage(dry_run=dry_run)
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "orphans": [o.as_dict() for o in orphans],
                "stale_ports": unplugged,
                "problems": problems,
            }
        )
    else:
        verb = "would remove" if dry_run else "removed"
        for port in unplugged:
            click.echo(f"{verb}: port {port} (its shared network stopped)")
        for orphan in orphans:
            click.echo(f"{verb}: {orphan.line()}")
        for problem in problems:
            click.echo(f"could not remove: {problem}")
        if not orphans and not unplugged:
            click.echo("nothing to collect")
    if problems:
        sys.exit(1)
