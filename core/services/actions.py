"""The core's undo actions, registered like any plugin's (``virtnet_undo_actions``).

Each reverses one kind of step from the plain arguments its ``Step.undo()`` journalled, and
succeeds when the object is already gone: these also run after a crash, on whatever the
killed process managed to do.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virtnet.apply import ApplyContext
from virtnet.errors import Conflict
from virtnet.hookspecs import hookimpl
from virtnet.model.codec import from_dict
from virtnet.plan import UndoAction
from virtnet.services.dnsmasq import DhcpLease, parse_leases
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.firewall_rules import NetworkRules
from virtnet.services.guard_rules import PortGuard
from virtnet.services.steps import services

if TYPE_CHECKING:
    from virtnet.services.nft_elements import ElementChange


def delete_link(ctx: ApplyContext, args: dict[str, Any]) -> None:
    """A guest's tap, macvtap or veth retires (its deletion goes on in the background, see
    :mod:`virtnet.services.reaper`); other links go now."""
    if ctx.teardown is not None and args.get("bulk") == ctx.teardown:
        return  # the network's own teardown deletes all its port links in one request
    from virtnet.services.netlink import RETIRED_GROUP  # not on every command's start-up

    svc = services(ctx)
    if svc.netlink.retire(args["ifname"], ctx.owner, peer_netns=args.get("peer_netns")):
        svc.reaper.reap(RETIRED_GROUP, checked=True)


def delete_link_in_netns(ctx: ApplyContext, args: dict[str, Any]) -> None:
    """A link living in a guest's namespace; nothing to do if the namespace is gone (the
    kernel removed the link with it)."""
    from virtnet.host import netns_path
    from virtnet.services.netlink import in_namespace

    if netns_path(args["netns"]).exists():
        in_namespace(args["netns"], lambda nl: nl.delete(args["ifname"], ctx.owner))


def remove_path(ctx: ApplyContext, args: dict[str, Any]) -> None:
    """Only under virtnet's own directories: a journal naming any other path is not ours."""
    path = Path(args["path"])
    roots = (ctx.host.run_dir.resolve(), ctx.host.state_dir.resolve())
    if not any(path.resolve().is_relative_to(root) for root in roots):
        raise Conflict(f"left {path} alone: it is outside virtnet's directories")
    path.unlink(missing_ok=True)


def delete_ovs_bridge(ctx: ApplyContext, args: dict[str, Any]) -> None:
    services(ctx).ovsdb.delete_bridge(args["name"], ctx.owner)


def delete_ovs_port(ctx: ApplyContext, args: dict[str, Any]) -> None:
    if ctx.teardown is not None and ctx.teardown == args["bridge"]:
        return  # the network's own bridge goes next, with all its ports, in one transaction
    services(ctx).ovsdb.delete_port(args["bridge"], args["name"], ctx.owner)


def remove_ovs_guard(ctx: ApplyContext, args: dict[str, Any]) -> None:
    from virtnet.services import openflow

    openflow.remove_guard(args["bridge"], int(args["cookie"]))


def delete_link_group(ctx: ApplyContext, args: dict[str, Any]) -> None:
    """A network's teardown: its bridge and its ports' links go, in the background."""
    svc = services(ctx)
    group = svc.netlink.retire_bridge(args["bridge"], ctx.owner)
    if group is not None:
        svc.reaper.reap(group, ctx.owner)


def delete_route(ctx: ApplyContext, args: dict[str, Any]) -> None:
    services(ctx).netlink.delete_route(args["dst"], args["gateway"])


def remove_network_firewall(ctx: ApplyContext, args: dict[str, Any]) -> None:
    _flush_removals(ctx)
    services(ctx).firewall.remove_network(from_dict(NetworkRules, args["rules"]))


def leave_network_firewall(ctx: ApplyContext, args: dict[str, Any]) -> None:
    known = args.get("rules")  # a journal of an older version has none
    rules = from_dict(NetworkRules, known) if known else None
    services(ctx).firewall.leave_link(args["ifname"], rules)


def remove_port_guard(ctx: ApplyContext, args: dict[str, Any]) -> None:
    guard = from_dict(PortGuard, args["guard"])
    leased = [lease.ip for lease in _leases(ctx, args.get("leases")) if lease.mac == guard.mac]
    _remove_elements(ctx, services(ctx).firewall.port_guard_removal(guard, leased))


def remove_host_guard(ctx: ApplyContext, args: dict[str, Any]) -> None:
    removal = services(ctx).firewall.host_guard_removal
    _remove_elements(ctx, removal(args["mac"], args["guarded"], args["isolated"]))


_REMOVALS = "core.firewall.removals"
_LEASES = "core.dnsmasq.leases"


def _remove_elements(ctx: ApplyContext, changes: list[ElementChange]) -> None:
    """One port's set elements go now; a network's teardown gathers all its ports' and
    removes them in a few transactions, before its own rules (:func:`_flush_removals`)."""
    if ctx.teardown is None:
        services(ctx).firewall.remove_elements(changes)
        return
    pending = ctx.scratch.get(_REMOVALS)
    if pending is None:
        pending = ctx.scratch[_REMOVALS] = []
        ctx.finally_.append(lambda: _flush_removals(ctx))
    pending.extend(changes)


def _flush_removals(ctx: ApplyContext) -> None:
    pending = ctx.scratch.pop(_REMOVALS, None)
    if pending:
        services(ctx).firewall.remove_elements(pending)


def _leases(ctx: ApplyContext, path: str | None) -> list[DhcpLease]:
    """The leases file a port's guard names, read once per teardown (each port's undo asks
    for the same file: a thousand reads of a thousand leases otherwise)."""
    if not path:
        return []
    cache: dict[str, list[DhcpLease]] = ctx.scratch.setdefault(_LEASES, {})
    if path not in cache or ctx.teardown is None:
        try:
            cache[path] = parse_leases(Path(path).read_text())
        except OSError:
            cache[path] = []
    return cache[path]


def leave_firewalld_zone(ctx: ApplyContext, args: dict[str, Any]) -> None:
    from virtnet.services import firewalld

    firewalld.leave_zone(args["bridge"], args["zone"])


def release_tables(ctx: ApplyContext, args: dict[str, Any]) -> None:
    _flush_removals(ctx)  # the ports' elements first: the tables go only once empty
    if not services(ctx).keep_tables:  # a long-lived process keeps them (Virtnet(keep_tables=True))
        services(ctx).firewall.drop_unused_tables()


def stop_dnsmasq(ctx: ApplyContext, args: dict[str, Any]) -> None:
    files = DnsmasqFiles.from_dict(args)
    dnsmasq = services(ctx).dnsmasq
    if files.member is not None:  # a shared dnsmasq: goes on without this network
        from virtnet.services.dnsmasq_group import DnsmasqGroup

        gone = DnsmasqGroup(dnsmasq).leave(files)
        ctx.finally_.append(lambda: dnsmasq.wait(gone))
        return
    pid = dnsmasq.signal_stop(files)
    ctx.finally_.append(lambda: dnsmasq.wait(pid))  # overlaps with the rest of the teardown
    for path in (files.conf, files.hosts, files.addn_hosts, files.leases, files.pid, files.script):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only once empty: the last network's
        files.directory.rmdir()
        files.directory.parent.rmdir()
        if not (files.servers.parent / "dnsmasq-shared").exists():  # (dnsmasq_group)
            files.servers.unlink(missing_ok=True)  # no dnsmasq left to read it


def remove_shaping(ctx: ApplyContext, args: dict[str, Any]) -> None:
    from virtnet.services import shaping

    shaping.unshape(services(ctx).netlink, args["ifname"], args.get("ifb"), ctx.owner)


class CoreActions:
    """Registered by :func:`virtnet.plugins.make_plugin_manager` on every plugin manager."""

    @hookimpl
    def virtnet_undo_actions(self) -> dict[str, UndoAction]:
        return {
            "core.link.delete": delete_link,
            "core.link.delete_group": delete_link_group,
            "core.link.delete_in_netns": delete_link_in_netns,
            "core.path.remove": remove_path,
            "core.ovs.bridge.delete": delete_ovs_bridge,
            "core.ovs.port.delete": delete_ovs_port,
            "core.ovs.guard.remove": remove_ovs_guard,
            "core.route.delete": delete_route,
            "core.firewall.network.remove": remove_network_firewall,
            "core.firewall.port.remove": remove_port_guard,
            "core.firewall.link.leave": leave_network_firewall,
            "core.firewall.host.remove": remove_host_guard,
            "core.firewalld.leave": leave_firewalld_zone,
            "core.firewall.release": release_tables,
            "core.dnsmasq.stop": stop_dnsmasq,
            "core.tc.remove": remove_shaping,
        }
