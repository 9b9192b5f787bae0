"""``net-update`` and ``net-dhcp-leases``: live changes to DHCP/DNS, and the leases given."""

from __future__ import annotations

import time

import click

from virtnet.cli_util import NETWORK, api, emit_json, read_input, table
from virtnet.model.update import COMMANDS, SECTIONS


@click.command("net-update")
@click.argument("name", type=NETWORK)
@click.argument("command", type=click.Choice(COMMANDS))
@click.argument("section", type=click.Choice(sorted(SECTIONS)))
@click.argument("xml")
@click.option("--parent-index", type=int, help="Which <ip> element (0 is the first).")
@click.option("--live", is_flag=True, help="Change the running network.")
@click.option("--config", is_flag=True, help="Change the persistent definition.")
@click.option("--current", is_flag=True, help="The live network if active, else the definition.")
def net_update(
    name: str,
    command: str,
    section: str,
    xml: str,
    parent_index: int | None,
    live: bool,
    config: bool,
    current: bool,
) -> None:
    """Add, delete or modify one element of NAME. XML is the element itself or a file."""
    text = xml if xml.lstrip().startswith("<") else read_input(xml)
    chosen = live or config
    live_done, config_done = api().update_network(
        name,
        command,
        section,
        text,
        live=live if chosen and not current else None,
        config=config if chosen and not current else None,
        parent_index=parent_index,
    )
    done = [what for what, changed in (("persistent config", config_done),
                                       ("live state", live_done)) if changed]  # fmt: skip
    click.echo(f"Updated network {name} {' and '.join(done)}")  # as virsh says it


@click.command("net-dhcp-leases")
@click.argument("name", type=NETWORK)
@click.option("--mac", help="Only this MAC's leases.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def net_dhcp_leases(name: str, mac: str | None, as_json: bool) -> None:
    """The DHCP leases NAME's dnsmasq has given."""
    leases = api().dhcp_leases(name, mac)
    if as_json:
        emit_json([lease.as_dict() for lease in leases])
        return
    rows = [
        [
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease.expiry))
            if lease.expiry
            else "never",
            lease.mac or "-",
            "ipv6" if ":" in lease.ip else "ipv4",
            lease.ip,
            lease.hostname or "-",
            lease.client_id or "-",
        ]
        for lease in leases
    ]
    table(["Expiry Time", "MAC address", "Protocol", "IP address", "Hostname", "Client ID"], rows)
