"""``virtnet``: virsh's network verbs over :class:`virtnet.api.Virtnet`.

No logic lives here: each command parses its arguments, calls one API method and prints the
result. Exit codes: 0 success, 1 operation failed, 2 bad usage or invalid input. Errors are
one line on stderr; ``-v`` adds the traceback and debug logging.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

import click

from virtnet.cli_conformance import conformance_command
from virtnet.cli_dhcp import net_dhcp_leases, net_update
from virtnet.cli_doctor import doctor_command, warn_if_blocked
from virtnet.cli_event import event
from virtnet.cli_gc import gc_command
from virtnet.cli_graph import graph_command
from virtnet.cli_lab import lab
from virtnet.cli_ports import (
    net_port_create,
    net_port_delete,
    net_port_dumpxml,
    net_port_info,
    net_port_list,
)
from virtnet.cli_util import (
    NETWORK,
    State,
    api,
    daemon_context,
    emit_json,
    read_input,
    table,
    yes_no,
)
from virtnet.errors import VirtnetError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--state-dir", envvar="VIRTNET_STATE_DIR", help="Persistent definitions [/var/lib/virtnet]."
)
@click.option("--run-dir", envvar="VIRTNET_RUN_DIR", help="Runtime state [/run/virtnet].")
@click.option("--netns", help="Act inside this network namespace (it must exist).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks.")
@click.version_option(package_name="virtnet")
@click.pass_context
def cli(
    ctx: click.Context, state_dir: str | None, run_dir: str | None, netns: str | None, verbose: bool
) -> None:
    """Virtual networks for VMs and containers (libvirt's network XML, pluggable backends)."""
    if daemon_context() is None:  # in the daemon, its own logging stays
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.WARNING,
            format="virtnet: %(levelname)s: %(message)s",
        )
    ctx.obj = State(state_dir, run_dir, netns, verbose)


@cli.command("net-define")
@click.argument("file")
@click.option("--backend", help="Serve this network with the named backend (stored in <metadata>).")
def net_define(file: str, backend: str | None) -> None:
    """Define a persistent network from an XML FILE ('-' for stdin)."""
    net = api().define_network(read_input(file), backend=backend)
    click.echo(f"Network {net.name} defined from {file}")


@cli.command("net-create")
@click.argument("file")
@click.option("--backend", help="Serve this network with the named backend.")
def net_create(file: str, backend: str | None) -> None:
    """Create and start a transient network from an XML FILE."""
    net = api().create_network(read_input(file), backend=backend)
    click.echo(f"Network {net.name} created from {file}")
    _warn(net.name)


@cli.command("net-undefine")
@click.argument("name", type=NETWORK)
def net_undefine(name: str) -> None:
    """Remove a network's persistent definition."""
    api().undefine_network(name)
    click.echo(f"Network {name} has been undefined")


@cli.command("net-start")
@click.argument("name", type=NETWORK)
@click.option("--dry-run", is_flag=True, help="Print the backend and the steps; change nothing.")
def net_start(name: str, dry_run: bool) -> None:
    """Start a defined network."""
    if dry_run:
        start = api().plan_start(name)
        click.echo(f"backend: {start.backend} ({start.reason})")
        for number, text in enumerate(start.plan.describe(), 1):
            click.echo(f"{number:3}. {text}")
        return
    api().start_network(name)
    click.echo(f"Network {name} started")
    _warn(name)


def _warn(name: str) -> None:
    """After a start: one ``warning:`` line on stderr for each thing that will surprise."""
    info = api().network_info(name)
    for warning in info.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    warn_if_blocked(info.get("bridge"))


@cli.command("net-destroy")
@click.argument("name", type=NETWORK)
def net_destroy(name: str) -> None:
    """Stop an active network (a transient one disappears)."""
    api().destroy_network(name)
    click.echo(f"Network {name} destroyed")


@cli.command("net-list")
@click.option("--all", "show_all", is_flag=True, help="Active and inactive networks.")
@click.option("--inactive", is_flag=True, help="Inactive networks only.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def net_list(show_all: bool, inactive: bool, as_json: bool) -> None:
    """List networks (active ones unless --all or --inactive)."""
    rows = api().list_networks(active=not inactive, inactive=show_all or inactive)
    if as_json:
        emit_json([r.__dict__ for r in rows])
        return
    table(
        ["Name", "State", "Autostart", "Persistent"],
        [
            [
                r.name,
                "active" if r.active else "inactive",
                yes_no(r.autostart),
                yes_no(r.persistent),
            ]
            for r in rows
        ],
    )


@cli.command("net-info")
@click.argument("name", type=NETWORK)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def net_info(name: str, as_json: bool) -> None:
    """Show a network's identity, state and backend."""
    info = api().network_info(name)
    if as_json:
        emit_json(info)
        return
    for label, value in (
        ("Name", info["name"]),
        ("UUID", info["uuid"]),
        ("Active", yes_no(info["active"])),
        ("Persistent", yes_no(info["persistent"])),
        ("Autostart", yes_no(info["autostart"])),
        ("Bridge", info["bridge"] or "-"),
        ("Backend", info["backend"] or "-"),
        ("Claimed", info.get("claim") or ""),
    ):
        click.echo(f"{label + ':':<16}{value}")


@cli.command("net-dumpxml")
@click.argument("name", type=NETWORK)
@click.option("--inactive", is_flag=True, help="The stored definition, not the live one.")
def net_dumpxml(name: str, inactive: bool) -> None:
    """Print a network's XML in libvirt's canonical form."""
    click.echo(api().dumpxml(name, inactive=inactive), nl=False)


@cli.command("net-autostart")
@click.argument("name", type=NETWORK)
@click.option("--disable", is_flag=True, help="Do not start it automatically.")
def net_autostart(name: str, disable: bool) -> None:
    """Mark a network to start when virtnet's service starts."""
    api().set_autostart(name, not disable)
    click.echo(f"Network {name} {'unmarked' if disable else 'marked'} as autostarted")


@cli.command("net-uuid")
@click.argument("name", type=NETWORK)
def net_uuid(name: str) -> None:
    """Print a network's UUID."""
    click.echo(api().network_info(name)["uuid"])


@cli.command("net-name")
@click.argument("uuid")
def net_name(uuid: str) -> None:
    """Print the name of the network with this UUID."""
    click.echo(api().lookup_uuid(uuid))


@cli.command("net-check")
@click.argument("name", type=NETWORK)
def net_check(name: str) -> None:
    """Report drift between an active network and the host (exit 1 if any)."""
    drift = api().check_network(name)
    for line in drift:
        click.echo(f"drift: {line}")
    if drift:
        sys.exit(1)
    click.echo(f"Network {name} is in sync")


@cli.command("net-reconcile")
@click.argument("name", type=NETWORK)
def net_reconcile(name: str) -> None:
    """Repair an active network's datapath from virtnet's record of its ports."""
    repairs = api().reconcile_network(name)
    for line in repairs:
        click.echo(f"repaired: {line}")
    click.echo(f"Network {name}: {len(repairs)} repair(s)")


@cli.command("net-repair")
@click.argument("name", type=NETWORK)
def net_repair(name: str) -> None:
    """Restore what drifted from an active network (what virtnetd does on its own)."""
    repair = api().repair_network(name)
    for line in repair.found:
        click.echo(f"drift: {line}")
    for line in repair.problems:
        click.echo(f"could not repair: {line}")
    for line in repair.remaining:
        click.echo(f"still: {line}")
    if repair.remaining:
        sys.exit(1)
    click.echo(f"Network {name} is in sync" + (" (repaired)" if repair.found else ""))


@cli.command("drivers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def drivers(as_json: bool) -> None:
    """List installed backends with their capabilities and host readiness."""
    api().rescan_plugins()  # a backend installed since virtnetd started shows at once
    backends, broken = api().backends(), api().broken_plugins()
    if as_json:
        emit_json([b.as_dict() for b in backends] + [b.as_dict() for b in broken])
        return
    if not backends:
        click.echo("No backends installed (entry-point group 'virtnet.drivers').")
    for b in backends:
        state = "ready" if b.readiness.ok else "NOT READY"
        click.echo(f"{b.name} {b.version} ({state}): {b.summary}")
        click.echo(f"  forward modes: {', '.join(sorted(m.value for m in b.forward_modes))}")
        click.echo(f"  attachments:   {', '.join(sorted(a.value for a in b.attachments))}")
        click.echo(f"  features:      {', '.join(sorted(b.features)) or '-'}")
        for problem in b.readiness.problems:
            click.echo(f"  problem: {problem}")
        for note in b.readiness.notes:
            click.echo(f"  note: {note}")
    for plugin in broken:
        click.echo(plugin.line())


for _command in (
    doctor_command,
    graph_command,
    gc_command,
    conformance_command,
    net_port_create,
    net_port_list,
    net_port_info,
    net_port_dumpxml,
    net_port_delete,
    net_update,
    net_dhcp_leases,
    event,
    lab,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes and one-line messages."""
    verbose = "-v" in (argv if argv is not None else sys.argv[1:]) or "--verbose" in (
        argv if argv is not None else sys.argv[1:]
    )
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="virtnet",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:  # usage errors: one line too, exit 2
        command = getattr(getattr(exc, "ctx", None), "command_path", None)
        where = f" (see '{command} --help')" if command else ""
        click.echo(f"error: {exc.format_message()}{where}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except VirtnetError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except PermissionError as exc:  # not root: say what is needed, not where it failed
        if verbose:
            traceback.print_exc()
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(
            f"error: permission denied{where}: virtnet changes the host's networking, so it "
            "runs as root (or, through virtnetd, as a member of the group given to it with "
            "--group)",
            err=True,
        )
        return 1
    except Exception as exc:  # a bug: still one line unless -v
        if verbose:
            traceback.print_exc()
        click.echo(
            f"error: internal error: {type(exc).__name__}: {exc} (run with -v for details)",
            err=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
