"""``virtnet doctor``: what on this host stands in the way of virtnet's networks."""

from __future__ import annotations

import sys

import click

from virtnet import doctor
from virtnet.cli_util import api, emit_json


def active_bridges() -> list[str]:
    vn = api()
    names = [n.name for n in vn.list_networks(inactive=False)]
    return [str(b) for b in (vn.network_info(n).get("bridge") for n in names) if b]


def blockers(bridges: list[str]) -> list[doctor.Blocker]:
    """Other programs' tables only (virtnet's own may hold thousands of chains); their names
    from one raw dump first, so a host with none (the usual case, after every net-start) never
    loads libnftables."""
    from virtnet.services.nft_query import NftQuery

    query = NftQuery()
    try:
        foreign = [(family, name) for family, name in query.tables() if name != doctor.OURS]
    finally:
        query.close()
    if not foreign:
        return []
    from virtnet.services.nft import Nft

    nft = Nft()
    ruleset = []
    for family, name in foreign:
        ruleset += nft.query(f"list table {family} {name}")
    return doctor.diagnose(ruleset, bridges)


@click.command("doctor")
@click.option("--fix", is_flag=True, help="Install the documented coexistence rules.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor_command(fix: bool, as_json: bool) -> None:
    """Find other programs' firewalls that drop the guests' traffic (Docker, firewalld, ufw,
    any drop-by-default chain on the forward or input hook); exit 1 if one does."""
    bridges = active_bridges()
    found = blockers(bridges)
    done: list[str] = []
    if fix and found:
        done = doctor.fix(found, bridges)
        found = blockers(bridges)
    if as_json:
        emit_json({"fixed": done, "problems": [
            {"where": b.where, "hook": b.hook, "owner": b.owner, "how": b.how,
             "advice": b.advice()} for b in found]})  # fmt: skip
    else:
        for line in done:
            click.echo(f"fixed: {line}")
        for b in found:
            click.echo(f"problem: {b.advice()}")
        if not found:
            click.echo("OK: no other firewall stands in the way of virtnet's networks")
    if found:
        sys.exit(1)


def warn_if_blocked(bridge: str | None) -> None:
    """One line on stderr when a foreign firewall would drop this network's traffic."""
    if not bridge:
        return
    try:
        found = blockers([bridge])
    except Exception:  # a warning must never fail the command that succeeded
        return
    for b in found:
        click.echo(f"warning: {b.advice()}", err=True)
