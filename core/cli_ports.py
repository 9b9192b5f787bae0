"""``net-port-*``: guest ports (a tap for a VM, a veth into a container's namespace)."""

from __future__ import annotations

import contextlib
import copy

import click

from virtnet.cli_util import NETWORK, api, emit_json, table, yes_no
from virtnet.errors import InvalidInput, Unsupported, VirtnetError
from virtnet.model.codec import to_dict
from virtnet.model.names import check_ifname
from virtnet.model.port import Attachment, AttachmentKind, NetworkPort
from virtnet.model.port_xml import format_port


@click.command("net-port-create")
@click.argument("network", type=NETWORK)
@click.option(
    "--tap",
    "tap",
    metavar="IFNAME",
    help="A VM's link, with this name (the default; a macvtap on direct networks).",
)
@click.option(
    "--owner",
    type=click.IntRange(0, 4294967294),
    metavar="UID",
    help="The tap's owner, so QEMU can open it.",
)
@click.option(
    "--guest-netns",
    "--netns",  # the first spelling: kept working, though --netns before the command is the host
    "guest_netns",
    metavar="NS",
    help="A container's link, into this namespace (a veth; a macvlan on direct networks).",
)
@click.option("--ifname", metavar="NAME", help="The veth's name inside NS [eth0].")
@click.option("--mac", help="The guest's MAC [52:54:00:xx:xx:xx, unique on this host].")
@click.option("--portgroup", help="Take VLAN, bandwidth and isolation from this portgroup.")
@click.option("--isolated", is_flag=True, help="Isolated ports cannot reach each other.")
@click.option("--no-spoof-check", is_flag=True, help="Let the guest use any MAC and IP.")
@click.option(
    "--ip",
    "addresses",
    multiple=True,
    metavar="ADDR",
    help="A static address the guest uses (repeatable, IPv4 or IPv6): its guard allows it.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 100_000),
    default=1,
    show_default=True,
    help="Make this many taps at once (with neither a name, a namespace, a MAC nor --ip); "
    "all or none: a failure removes those already made.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole port as JSON.")
def net_port_create(
    network: str,
    tap: str | None,
    owner: int | None,
    guest_netns: str | None,
    ifname: str | None,
    mac: str | None,
    portgroup: str | None,
    isolated: bool,
    no_spoof_check: bool,
    addresses: tuple[str, ...],
    count: int,
    as_json: bool,
) -> None:
    """Create a guest's link and plug it into an active NETWORK; prints the port's uuid."""
    if count > 1:
        for option, value in (("--tap", tap), ("--guest-netns", guest_netns), ("--mac", mac),
                              ("--ip", addresses)):  # fmt: skip
            if value:
                raise InvalidInput(f"names one port: not with --count {count}", subject=option)
    if tap and guest_netns:
        raise InvalidInput("give --tap or --guest-netns, not both", subject="--guest-netns")
    if owner is not None and guest_netns:
        raise InvalidInput("--owner applies to taps only", subject="--owner")
    if ifname and not guest_netns:
        raise InvalidInput("--ifname needs --guest-netns", subject="--ifname")
    attachment = Attachment(
        kind=AttachmentKind.VETH if guest_netns else AttachmentKind.TAP,
        ifname=check_ifname(tap, "--tap") if tap else None,
        netns=guest_netns,
        guest_ifname=check_ifname(ifname, "--ifname") if ifname else None,
        owner_uid=owner,
        spoof_check=False if no_spoof_check else None,
        addresses=list(addresses),
    )
    request = NetworkPort(
        network=network,
        mac=mac,
        portgroup=portgroup,
        isolated=True if isolated else None,
        attachment=attachment,
    )
    if count == 1:
        port = api().create_port(network, request)
        if as_json:
            emit_json(to_dict(port))
        else:
            click.echo(port.uuid)
        return
    ports = _create_many(network, request, count)
    if as_json:
        emit_json([to_dict(p) for p in ports])
    else:
        click.echo("\n".join(p.uuid or "" for p in ports))


def _create_many(network: str, request: NetworkPort, count: int) -> list[NetworkPort]:
    """``count`` ports like ``request``, with progress on a terminal; all or none (a failure
    or Ctrl-C deletes those already made, then says why)."""
    from virtnet.progress import Progress

    made: list[NetworkPort] = []
    with Progress(f"{network}: ports", total=count) as progress:
        try:
            for i in range(count):
                progress.step(f"port {i + 1}")
                made.append(api().create_port(network, copy.deepcopy(request)))  # it fills it in
        except BaseException:
            for port in reversed(made):
                progress.step(f"undoing: port {port.uuid}")
                with contextlib.suppress(VirtnetError):
                    api().delete_port(port.uuid or "")
            raise
    return made


@click.command("net-port-list")
@click.argument("network", type=NETWORK)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def net_port_list(network: str, as_json: bool) -> None:
    """List the ports of NETWORK."""
    ports = api().list_ports(network)
    dropped = api().dropped_packets(network) if ports else {}
    if as_json:
        emit_json([{**to_dict(p), "dropped_packets": dropped.get(p.uuid or "")} for p in ports])
        return
    rows = [
        [
            p.uuid or "",
            p.attachment.kind.value,
            p.attachment.ifname or "-",
            p.mac or "-",
            p.attachment.netns or "-",
            yes_no(bool(p.isolated)),
            str(dropped[p.uuid]) if p.uuid in dropped else "-",
            owner(p),
        ]
        for p in ports
    ]
    table(["UUID", "Kind", "Interface", "MAC", "Namespace", "Isolated", "Dropped", "Owner"], rows)


def owner(port: NetworkPort) -> str:
    """Whose the port is: the libvirt domain or CNI container that asked for it, or the user
    of a VM plugged through the bridge helper; "-" for a port made by hand."""
    if port.owner is not None:
        return port.owner.name
    if port.attachment.owner_uid is not None:
        return f"uid {port.attachment.owner_uid}"
    return "-"


@click.command("net-port-info")
@click.argument("uuid")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def net_port_info(uuid: str, as_json: bool) -> None:
    """Show a port, and what its anti-spoofing dropped lately and why."""
    port = api().get_port(uuid)
    try:
        drops: list[dict[str, object]] | None = api().port_drops(uuid)
        unavailable = ""
    except Unsupported as exc:
        drops, unavailable = None, str(exc)
    if as_json:
        emit_json({"port": to_dict(port), "drops": drops, "drops_unavailable": unavailable})
        return
    a = port.attachment
    for label, value in (
        ("UUID", port.uuid or ""),
        ("Network", port.network),
        ("Kind", a.kind.value),
        ("Interface", a.ifname or "-"),
        ("MAC", port.mac or "-"),
        ("Namespace", a.netns or "-"),
        ("Isolated", yes_no(bool(port.isolated))),
        ("Owner", owner(port)),
        ("Anti-spoofing", yes_no(a.spoof_check is not False)),
    ):
        click.echo(f"{label + ':':<16}{value}")
    if drops is None:
        click.echo(f"{'Dropped:':<16}- ({unavailable})")
        return
    total = sum(int(str(d["packets"])) for d in drops)
    click.echo(f"{'Dropped:':<16}{total} packets in the last hour")
    for d in drops:
        click.echo(f"  {d['packets']} packets, last {d['seconds_ago']} s ago: {d['why']}")


@click.command("net-port-dumpxml")
@click.argument("uuid")
def net_port_dumpxml(uuid: str) -> None:
    """Print a port as libvirt <networkport> XML."""
    click.echo(format_port(api().get_port(uuid)), nl=False)


@click.command("net-port-delete")
@click.argument("uuid")
def net_port_delete(uuid: str) -> None:
    """Unplug a port and remove the link virtnet made for it."""
    api().delete_port(uuid)
    click.echo(f"Network port {uuid} deleted")
