"""The Python API embedding stacks use; the CLI is a thin layer over it.

>>> vn = Virtnet(state_dir="/tmp/vn/state", run_dir="/tmp/vn/run")    # doctest: +SKIP
>>> vn.define_network(open("default.xml").read())                      # doctest: +SKIP
>>> vn.start_network("default")                                        # doctest: +SKIP

Every method that changes something takes the host lock, checks its input before touching the
host, and either completes or rolls back. Errors are :mod:`virtnet.errors` classes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virtnet import drift
from virtnet.apply import ApplyContext, Journal, apply_plan, repair_plan, rollback_all
from virtnet.backend import FEATURE_BANDWIDTH, FEATURE_PORT_ISOLATION, FEATURE_VLAN, BackendInfo
from virtnet.catalog import UNDO_KEY, Catalog
from virtnet.errors import Conflict, InvalidInput, NotFound, Unsupported, VirtnetError
from virtnet.events import Event, EventKind
from virtnet.hookspecs import hookimpl
from virtnet.host import host_lock, make_host
from virtnet.model import (
    Bridge,
    Network,
    NetworkPort,
    complete_network,
    format_network,
    parse_network,
    random_mac,
    validate_network,
)
from virtnet.model.clashes import ClashIndex
from virtnet.model.codec import from_dict, to_dict
from virtnet.model.names import check_mac, check_uuid
from virtnet.model.network import ForwardMode
from virtnet.model.port import AttachmentKind
from virtnet.model.update import RELOADABLE, apply_update
from virtnet.model.validate import validate_port_addresses
from virtnet.ownership import Owner
from virtnet.plan import Plan, Undo
from virtnet.plugin_loading import BrokenPlugin
from virtnet.plugins import Hooks, make_plugin_manager, set_backend_override
from virtnet.services import Services
from virtnet.services.dnsmasq import DhcpLease, Dnsmasq, within
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.recipes import refresh_dnsmasq, subnets
from virtnet.store import ActiveNetwork, Definition, Store

if TYPE_CHECKING:
    from virtnet.gc import Orphan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkSummary:
    """One row of ``net-list``."""

    name: str
    uuid: str
    active: bool
    persistent: bool
    autostart: bool
    backend: str | None
    bridge: str | None


#: Networks ``virtnet drivers`` asks every plugin's claim about: libvirt's default network
#: and an isolated one.
PROBE_NETWORKS = (
    "<network><name>probe-nat</name><uuid>00000000-0000-4000-8000-000000000001</uuid>"
    "<forward mode='nat'/><bridge name='virbr0'/><ip address='192.168.122.1' prefix='24'>"
    "<dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>",
    "<network><name>probe-isolated</name><uuid>00000000-0000-4000-8000-000000000002</uuid>"
    "<bridge name='virbr1'/></network>",
)


@dataclass(frozen=True)
class StartPlan:
    """What ``net-start --dry-run`` shows: the backend, why it serves the network, the steps."""

    backend: str
    reason: str
    plan: Plan


@dataclass(frozen=True)
class Repair:
    """What :meth:`Virtnet.repair_network` found, and what is still wrong after it."""

    found: list[str]
    remaining: list[str]
    problems: list[str]


class _Subscriber:
    """Adapts a plain callback to the ``virtnet_event`` hook."""

    def __init__(self, callback: Callable[[Event], None]) -> None:
        self.callback = callback

    @hookimpl
    def virtnet_event(self, event: Event) -> None:
        self.callback(event)


class Virtnet:
    """One host's virtual networks.

    ``netns`` names the network namespace this host lives in: it picks the per-namespace state
    and run directories, and is passed to backends in ``Host.netns``. The API never moves the
    calling thread into it (that would surprise an embedder or a test runner); the CLI's
    ``--netns`` does that for its whole process. ``plugins`` are extra plugin objects
    (observers, policies, a private backend) beside the installed ones.
    """

    def __init__(
        self,
        state_dir: str | Path | None = None,
        run_dir: str | Path | None = None,
        netns: str | None = None,
        plugins: Iterable[object] = (),
        autoload: bool | None = None,
        keep_tables: bool = False,
    ) -> None:
        self.host = make_host(state_dir, run_dir, netns)
        # keep_tables: virtnet's nftables tables stay when the last network stops (a
        # long-lived process: virtnetd). Inert without networks (every rule matches a set that
        # is then empty), and making them again cost the next first start ~7 ms of libnftables
        # parsing ~100 rules. drop_unused_tables() removes them (virtnetd's exit).
        self._keep_tables = keep_tables
        self.pm, broken, self._distributions = make_plugin_manager(plugins, autoload=autoload)
        self.hooks = Hooks(self.pm, self.host, broken, self._distributions)
        self._store: Store | None = None
        self._catalog: Catalog | None = None
        self._services: Services | None = None
        self._xml_cache: dict[str, Network] = {}
        #: the other networks a new one is checked against, kept between calls: every
        #: definition (and transient network), and the running ones (virtnet.model.clashes)
        self._defined = ClashIndex(self._parsed)
        self._running = ClashIndex(self._parsed)
        if self.host.run_path("journal").is_dir():  # undo a killed process's half-done work
            _ = self.store  # now, as construction always did; a fresh host creates nothing

    def _has_state(self) -> bool:
        return (self.host.state_dir / "virtnet.db").exists() or (
            self.host.run_dir / "runtime.db"
        ).exists()

    @property
    def store(self) -> Store:
        """Definitions and runtime state, opened on first use (``virtnet drivers`` creates no
        directories); what a killed process left half-built is undone first. Opened under
        the host lock: SQLite answers "database is locked" to a connection that switches a
        new database to WAL while another is opening it, busy timeout or not (measured: 12
        of 2,000 connections, 20 processes at once on a fresh file)."""
        if self._store is None:
            with host_lock(self.host):
                self._store = Store(self.host)
                self._recover()
        return self._store

    @property
    def catalog(self) -> Catalog:
        """Where networks are recorded: this host's store and the shared catalogs of backends
        whose networks span hosts (:mod:`virtnet.catalog`)."""
        if self._catalog is None:
            self._catalog = Catalog(self.store, lambda: self.hooks.shared_catalogs())
        return self._catalog

    @property
    def services(self) -> Services:
        """The core's datapath services for this host, created on first use."""
        if self._services is None:
            self._services = Services(self.host)
            self._services.keep_tables = self._keep_tables
            self._services.share()  # backends' drift checks reuse them (Services.once)
        return self._services

    def drop_unused_tables(self) -> None:
        """Remove virtnet's nftables tables if no network uses them (what the last network's
        stop does unless made with ``keep_tables``)."""
        with host_lock(self.host):
            self.services.call(self.services.firewall.drop_unused_tables)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the links retired by unplugs and stops are deleted; False if they are
        not after ``timeout`` seconds (default 30).

        An unplug or a stop returns once its links are out of service (down, detached,
        renamed ``vnr<ifindex>``: names free, no frame forwarded) and leaves their deletion,
        ~15 ms of kernel time each, to a background thread that deletes many per request
        (:mod:`virtnet.services.reaper`). Nothing needs to wait for it; this is for who wants
        the host exactly as before (a test's snapshot). :meth:`close` settles too."""
        return self._services is None or self._services.settle(timeout)

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Virtnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plugins and events ---------------------------------------------------------------------
    def register(self, plugin: object) -> None:
        """Add a plugin object (observer, policy, fault injector) at run time."""
        self.pm.register(plugin)
        self._renew_hooks()

    def _renew_hooks(self, broken: list[BrokenPlugin] | None = None) -> None:
        """A fresh facade (backends are described again); entry points that failed to load
        stay listed unless ``broken`` replaces them."""
        if broken is None:
            broken = [b for b in self.hooks.broken if b.stage in ("import", "register")]
        self.hooks = Hooks(self.pm, self.host, broken, self._distributions)

    def rescan_plugins(self) -> None:
        """Load backends and plugins installed since this object was made (and retry broken
        ones): ``virtnet drivers`` and virtnetd's SIGHUP call it, so a new backend needs no
        restart. A plugin already loaded is not reloaded: an upgrade needs a restart."""
        from virtnet.plugin_loading import load_entry_points
        from virtnet.plugins import ENTRY_POINT_GROUPS

        if os.environ.get("VIRTNET_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
            return
        self._renew_hooks(load_entry_points(self.pm, ENTRY_POINT_GROUPS, self._distributions))

    def broken_plugins(self) -> list[BrokenPlugin]:
        """Plugins set aside (failed to load, describe or claim), for ``virtnet drivers``."""
        self.hooks.backends()  # describing sets aside the backends that fail to
        for xml in PROBE_NETWORKS:  # and claiming ordinary networks, those whose claim raises
            self.hooks.probe_claims(parse_network(xml))
        return list(self.hooks.broken)

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` with every lifecycle event this object causes."""
        self.register(_Subscriber(callback))

    def backends(self) -> list[BackendInfo]:
        return sorted(self.hooks.backends().values(), key=lambda b: b.name)

    # definitions ----------------------------------------------------------------------------
    def define_network(self, xml: str, backend: str | None = None) -> Network:
        """Define (or redefine) a persistent network from libvirt network XML."""
        net = self._parse(xml, backend)
        with host_lock(self.host):
            claimed = self._claim_for_storage(net)
            self.catalog.require(claimed)  # where it goes must answer before anything else
            self._complete_and_check(net)
            assert net.uuid is not None
            self.catalog.put_definition(net.name, net.uuid, format_network(net), claimed)
        self.hooks.emit(Event(EventKind.NETWORK_DEFINED, net.name))
        return net

    def undefine_network(self, name: str) -> None:
        """Forget a definition; an active network keeps running as a transient one."""
        with host_lock(self.host):
            if self.catalog.definition(name) is None:
                raise self._undefined(name)
            self.catalog.delete_definition(name)
        self.hooks.emit(Event(EventKind.NETWORK_UNDEFINED, name))

    def set_autostart(self, name: str, enabled: bool = True) -> None:
        with host_lock(self.host):
            if self.catalog.definition(name) is None:
                raise self._undefined(name, "only defined networks start automatically")
            self.catalog.set_autostart(name, enabled)

    # lifecycle ------------------------------------------------------------------------------
    def create_network(self, xml: str, backend: str | None = None) -> Network:
        """Start a transient network: it is gone once destroyed."""
        net = self._parse(xml, backend)
        with host_lock(self.host):
            if self.catalog.definition(net.name) is not None:
                raise Conflict(f"network {net.name!r} is already defined; use net-start")
            self._complete_and_check(net)
            self._start(net)
        return net

    def start_network(self, name: str) -> Network:
        with host_lock(self.host):
            definition = self.catalog.definition(name)
            if definition is None:
                raise self._undefined(name)
            net = parse_network(definition.xml)
            self._start(net)
        return net

    def plan_start(self, name: str) -> StartPlan:
        """The backend, why it was chosen, and the steps ``start_network`` would run
        (``--dry-run``)."""
        definition = self.catalog.definition(name)
        if definition is None:
            raise self._undefined(name)
        if self.catalog.active_network(name) is not None:  # as net-start itself would say
            raise Conflict(f"network {name!r} is already active")
        net = parse_network(definition.xml)
        backend, reason = self._resolve_backend(net)
        return StartPlan(backend, reason, self.hooks.plan_start(backend, net))

    def destroy_network(self, name: str) -> None:
        with host_lock(self.host):
            active = self.catalog.active_network(name)
            if active is None:
                raise Conflict(f"network {name!r} is not active")
            problems = []
            bridge = active.info.get("bridge")  # a bridge the network owns goes as a whole
            teardown = str(bridge) if bridge and active.info.get("owned") else None
            ports = self.store.ports(name)
            shared_undo = active.info.get(UNDO_KEY)
            # the record goes first: if this process dies half-way, the journals left behind
            # (with no active object) are what the next one undoes
            self.catalog.delete_active(name)
            if isinstance(shared_undo, list):  # started on any host: its undo came with it
                journal = self._network_journal(name)
                for record in shared_undo:
                    journal.append(Undo.from_dict(record))
                journal.close()
            journals = [self._port_journal(port["uuid"]) for port in ports]
            problems += self._rollback(*journals, self._network_journal(name), teardown=teardown)
        for problem in problems:
            log.warning("destroy %s: %s", name, problem)
        self.hooks.emit(Event(EventKind.NETWORK_STOPPED, name))

    def _start(self, net: Network) -> None:
        if self.catalog.active_network(net.name) is not None:
            raise Conflict(f"network {net.name!r} is already active")
        validate_network(net)
        self._running.sync(self.catalog.active_xml().values()).check(net)
        self.hooks.validate(net)
        backend, reason = self._resolve_backend(net)
        plan = self.hooks.plan_start(backend, net)
        plan.info.setdefault("claim", reason)
        journal = self._network_journal(net.name)
        assert net.uuid is not None
        shared = self.catalog.is_shared(backend)
        # a shared network's objects are not this host's: labelled without this host's scope
        self._apply(plan, journal, Owner(net.uuid, scope=None if shared else self.host.scope))
        try:
            info = dict(plan.info)
            if shared:  # whichever host stops it needs what the start made
                info[UNDO_KEY] = [undo.as_dict() for undo in journal.records()]
            self.catalog.put_active(
                ActiveNetwork(net.name, net.uuid, format_network(net), backend, info)
            )
        except BaseException:
            self._rollback(journal)
            self.settle()  # a failure leaves the host as it was, retired links deleted
            raise
        if shared:
            journal.remove()
        self.hooks.emit(Event(EventKind.NETWORK_STARTED, net.name, detail={"backend": backend}))

    # queries --------------------------------------------------------------------------------
    def list_networks(self, *, active: bool = True, inactive: bool = True) -> list[NetworkSummary]:
        if self._store is None and not self._has_state() and not self.hooks.shared_catalogs():
            return []  # nothing was ever defined here: a listing creates nothing either
        running = {a.name: a for a in self.catalog.active()}
        defined = {d.name: d for d in self.catalog.definitions()}
        return [
            self._summary(name, defined.get(name), running.get(name))
            for name in sorted(set(running) | set(defined))
            if (active and name in running) or (inactive and name not in running)
        ]

    def _summary(self, name: str, d: Definition | None, a: ActiveNetwork | None) -> NetworkSummary:
        net = self._parsed(a.xml if a else d.xml if d else "")  # a daemon parses each once
        # what ports plug into, as the running backend says (OVN: the integration bridge, not
        # the libvirt-default name its definition carries)
        bridge = a.info.get("bridge") if a else None
        return NetworkSummary(
            name=name,
            uuid=net.uuid or "",
            active=a is not None,
            persistent=d is not None,
            autostart=bool(d and d.autostart),
            backend=a.backend if a else None,
            bridge=str(bridge) if bridge else net.bridge.name if net.bridge else None,
        )

    def get_network(self, name: str, *, inactive: bool = False) -> Network:
        """The live definition of an active network (or with ``inactive`` the stored one)."""
        return parse_network(self.dumpxml(name, inactive=inactive))

    def dumpxml(self, name: str, *, inactive: bool = False) -> str:
        active = None if inactive else self.catalog.active_network(name)
        if active is not None:
            return active.xml
        definition = self.catalog.definition(name)
        if definition is not None:
            return definition.xml
        if inactive and self.catalog.active_network(name) is not None:
            raise NotFound(f"network {name!r} is transient: it has no inactive definition")
        raise NotFound(f"network {name!r} does not exist")

    def network_info(self, name: str) -> dict[str, Any]:
        """``net-info``: identity, state, backend and what the backend recorded."""
        definition, active = self.catalog.definition(name), self.catalog.active_network(name)
        if definition is None and active is None:
            raise NotFound(f"network {name!r} does not exist")
        info: dict[str, Any] = dataclasses.asdict(self._summary(name, definition, active))
        if active is not None:
            info["started"] = active.started
            info["status"] = active.info
            info["claim"] = active.info.get("claim")
            info["warnings"] = self._warnings(self._parsed(active.xml))
        elif definition is not None:  # which backend would serve it, and why
            try:
                info["backend"], info["claim"] = self._resolve_backend(
                    parse_network(definition.xml)
                )
            except VirtnetError as exc:
                info["claim"] = f"cannot start: {exc}"
            info["ports"] = len(self.store.ports(name))
        return info

    def lookup_uuid(self, uuid: str) -> str:
        """The name of the network with this uuid."""
        wanted = check_uuid(uuid, "uuid")
        for row in self.list_networks():
            if row.uuid == wanted:
                return row.name
        raise NotFound(f"no network has uuid {wanted}")

    def check_network(self, name: str) -> list[str]:
        """Drift between the running network and the host, one line per finding: the
        backend's check, then what the core finds itself (:mod:`virtnet.drift`): objects its
        journal lists that are gone or relabelled, and ports whose link is gone."""
        active = self.catalog.active_network(name)
        if active is None:
            raise Conflict(f"network {name!r} is not active")
        found = self._drift(active)
        ports = [from_dict(NetworkPort, p) for p in self.store.ports(name)]
        return drift.merge(found, self.services.call(drift.port_drift, self.services, ports))

    def _drift(self, active: ActiveNetwork) -> list[str]:
        """The backend's check and the journal's (what the daemon's watcher asks each pass)."""
        found = self.hooks.check(active.backend, parse_network(active.xml), active.info)
        records = self._network_journal(active.name).records()
        core = self.services.call(drift.journal_drift, self.services, records)
        return drift.merge(found, core)

    def reconcile_network(self, name: str) -> list[str]:
        """Repair the datapath of an active network from virtnet's record of its ports (e.g.
        after Open vSwitch restarted); one line per repair."""
        with host_lock(self.host):
            active = self.catalog.active_network(name)
            if active is None:
                raise Conflict(f"network {name!r} is not active")
            ports = [from_dict(NetworkPort, p) for p in self.store.ports(name)]
            net = parse_network(active.xml)
            return self.hooks.reconcile(active.backend, net, active.info, ports)

    def repair_network(self, name: str) -> Repair:
        """Find drift as ``net-check`` does and restore what is missing, without disturbing
        what works: the network's plan and each port's plan are replayed with
        :meth:`~virtnet.plan.Step.repair` (a deleted bridge is made again and the guests'
        links rejoin it; flushed rules and a dead dnsmasq come back, with its leases)."""
        with host_lock(self.host):
            active = self.catalog.active_network(name)
            if active is None:
                raise Conflict(f"network {name!r} is not active")
            net = parse_network(active.xml)
            found = self._drift(active)
            if not found:
                return Repair([], [], [])
            ctx = self._context(Owner(active.uuid, scope=self.host.scope))
            plan = self.hooks.plan_start(active.backend, net)
            problems = self.services.call(repair_plan, ctx, plan)
            status = self._port_status(name, net, active.info)
            for data in self.store.ports(name):
                port = from_dict(NetworkPort, data)
                port_plan = self.hooks.plan_plug(active.backend, net, port, status)
                ctx.owner = Owner(active.uuid, port.uuid, self.host.scope).label
                problems += self.services.call(repair_plan, ctx, port_plan)
            remaining = self._drift(active)
        repair = Repair(found, remaining, problems)
        if remaining != found:  # something was restored (drift nobody can fix is not news)
            detail = dataclasses.asdict(repair)
            self.hooks.emit(Event(EventKind.NETWORK_REPAIRED, name, detail=detail))
        return repair

    # ports ----------------------------------------------------------------------------------
    def plan_port(self, network: str, port: NetworkPort | None = None) -> Plan:
        """The steps ``create_port`` would run (a dry run): ``port`` comes back completed
        (uuid, MAC, the names of the links it would make); nothing changes."""
        port = port or NetworkPort(network=network)
        port.network = network
        active = self.catalog.active_network(network)
        if active is None:
            raise Conflict(f"network {network!r} is not active")
        return self._plan_port(active, parse_network(active.xml), port)

    def _plan_port(self, active: ActiveNetwork, net: Network, port: NetworkPort) -> Plan:
        self._complete_port(net, port)
        info = self.hooks.backend_info(active.backend)
        if port.vlan and FEATURE_VLAN not in info.features:
            raise Unsupported(f"backend {info.name!r} cannot tag VLANs", subject="port/vlan")
        if port.isolated and FEATURE_PORT_ISOLATION not in info.features:
            raise Unsupported(
                f"backend {info.name!r} cannot isolate ports", subject="port/isolated"
            )
        status = self._port_status(active.name, net, active.info)
        return self.hooks.plan_plug(active.backend, net, port, status)

    def create_port(self, network: str, port: NetworkPort | None = None) -> NetworkPort:
        """Plug a guest port into an active network; returns it with its plug result.

        Without ``port``: a port with no link (``AttachmentKind.NONE``), as libvirt's
        net-port-create makes: a reservation for a guest whose stack makes its own link.
        The CLI's ``net-port-create`` makes a tap by default."""
        port = port or NetworkPort(network=network)
        port.network = network
        with host_lock(self.host):
            active = self.catalog.active_network(network)
            if active is None:
                raise Conflict(f"network {network!r} is not active")
            net = parse_network(active.xml)
            plan = self._plan_port(active, net, port)
            assert port.uuid is not None and net.uuid is not None
            journal = self._port_journal(port.uuid)
            self._apply(plan, journal, Owner(net.uuid, port.uuid, self.host.scope))
            data = to_dict(port)
            if self.catalog.is_shared(active.backend):  # which run of it (release_stale_ports)
                data["network_started"] = active.started
            try:
                self.store.put_port(port.uuid, network, data)
            except BaseException:
                self._rollback(journal)
                self.settle()
                raise
        self.hooks.emit(Event(EventKind.PORT_PLUGGED, network, port.uuid, _port_detail(port)))
        return port

    def plug_tap(
        self, network: str, port: NetworkPort, *, vnet_hdr: bool = True
    ) -> tuple[NetworkPort, int]:
        """A tap port whose life is its file descriptor's: made, opened and handed over as
        one step (the caller owns the descriptor and passes it to QEMU), and released by
        :meth:`release_closed_ports` once no process holds the tap open. For VMs whose
        launcher cannot make ports (QEMU's bridge helper): the port cannot outlive the VM.
        Under the host lock from creation to open, so no release check sees it closed."""
        if port.attachment.kind not in (AttachmentKind.TAP, AttachmentKind.NONE):
            raise InvalidInput("plug_tap makes taps only", subject="port/attachment/kind")
        port.attachment.kind = AttachmentKind.TAP
        port.attachment.release_on_close = True
        with host_lock(self.host):
            made = self.create_port(network, port)
            ifname = made.attachment.ifname or ""
            try:
                fd = self.services.call(lambda: self.services.netlink.open_tap(ifname, vnet_hdr))
            except BaseException:
                self.delete_port(made.uuid or "")
                raise
        return made, fd

    def release_closed_ports(self, network: str | None = None) -> list[str]:
        """Delete the ports made by :meth:`plug_tap` whose tap no process holds open any more
        (the VM exited, or its launcher died before taking the descriptor), of ``network``
        or of every active network; returns their uuids. virtnetd runs it when a port's link
        changes (the kernel reports carrier loss) and at start-up."""
        released = []
        with host_lock(self.host):
            for data in self.store.ports(network):  # this host's ports, of every network
                attachment = data.get("attachment") or {}
                if not attachment.get("release_on_close") or not attachment.get("ifname"):
                    continue
                netlink = self.services.netlink
                if not self.services.call(netlink.tap_closed, str(attachment["ifname"])):
                    continue
                self.delete_port(str(data["uuid"]))
                released.append(str(data["uuid"]))
        return released

    def release_stale_ports(self, *, dry_run: bool = False) -> list[str]:
        """Unplug this host's ports of shared networks that stopped since they were plugged
        (destroyed from another host, maybe started again): their guests' links here are all
        that is left of them. Returns their uuids. virtnetd runs it on every tick, ``virtnet
        gc`` when asked; a catalog that cannot be read raises (an unreachable database is no
        reason to unplug)."""
        if not self.hooks.shared_catalogs():
            return []  # no shared networks here: nothing to sweep (the daemon asks each tick)
        with host_lock(self.host):
            local = set(self.store.active_xml())
            candidates = [p for p in self.store.port_networks() if p[1] not in local]
            if not candidates:
                return []
            running = {a.name: a.started for a in self.catalog.active(strict=True)}
            # started again since the plug: another run of the network, not this port's
            stale = [(uuid, network) for uuid, network, started in candidates
                     if network not in running or running[network] != started]  # fmt: skip
            ports = [self.get_port(uuid) for uuid, _ in stale]
            if dry_run:
                return [str(port.uuid) for port in ports]
            for port in ports:
                assert port.uuid is not None
                self.store.delete_port(port.uuid)
                for problem in self._rollback(self._port_journal(port.uuid)):
                    log.warning("unplug %s: %s", port.uuid, problem)
        for port in ports:
            self.hooks.emit(
                Event(EventKind.PORT_UNPLUGGED, port.network, port.uuid, _port_detail(port))
            )
        return [str(port.uuid) for port in ports]

    def shared_networks_here(self) -> list[str]:
        """Shared networks (running) that have ports on this host."""
        if not self.hooks.shared_catalogs():
            return []
        local = set(self.store.active_xml())
        names = {network for _, network, _ in self.store.port_networks() if network not in local}
        if not names:
            return []
        return sorted(a.name for a in self.catalog.active(strict=True) if a.name in names)

    def list_ports(self, network: str) -> list[NetworkPort]:
        if (
            self.catalog.active_network(network) is None
            and self.catalog.definition(network) is None
        ):
            raise NotFound(f"network {network!r} does not exist")
        return [from_dict(NetworkPort, p) for p in self.store.ports(network)]

    def get_port(self, uuid: str) -> NetworkPort:
        data = self.store.port(check_uuid(uuid, "port uuid"))
        if data is None:
            raise NotFound(f"no port has uuid {uuid}")
        return from_dict(NetworkPort, data)

    def dropped_packets(self, network: str | None = None) -> dict[str, int]:
        """Port uuid -> packets its anti-spoofing dropped in the last hour, for the guarded
        ports of ``network`` (every active network's when None): see :mod:`virtnet.drops`."""
        from virtnet import drops

        return drops.dropped_packets(self, network)

    def port_drops(self, uuid: str) -> list[dict[str, Any]]:
        """What the port's anti-spoofing guard dropped since it was plugged, most recent first
        (reason, source where the guard knows it, packets, bytes, how long ago, ``why``); a
        port without a guard raises :class:`Unsupported` saying why (:mod:`virtnet.drops`)."""
        from virtnet import drops

        return drops.port_drops(self, uuid)

    def delete_port(self, uuid: str) -> None:
        with host_lock(self.host):
            port = self.get_port(uuid)
            self.store.delete_port(port.uuid or uuid)  # first, as in destroy_network
            problems = self._rollback(self._port_journal(port.uuid or uuid))
        for problem in problems:
            log.warning("unplug %s: %s", uuid, problem)
        self.hooks.emit(
            Event(EventKind.PORT_UNPLUGGED, port.network, port.uuid, _port_detail(port))
        )

    def collect_garbage(self, *, dry_run: bool = False) -> tuple[list[Orphan], list[str]]:
        """Objects carrying virtnet's label that no record owns (:mod:`virtnet.gc`), removed
        unless ``dry_run``; returns them and the problems met removing them. Unlabelled
        objects are never candidates. One state directory per namespace: the records of
        this one are all the collector asks."""
        from virtnet import gc

        with host_lock(self.host):
            ports = self.store.ports()
            records = gc.Records(
                frozenset(a.uuid for a in self.catalog.active()),
                frozenset(str(p["uuid"]) for p in ports),
                frozenset(str(p.get("mac")) for p in ports),
                self.host.scope,
            )
            orphans = self.services.call(gc.find, self.services, records, self.host.run_dir)
            problems = [] if dry_run else self.services.call(gc.remove, self.services, orphans)
        for problem in problems:
            log.warning("gc: %s", problem)
        return orphans, problems

    # live changes and leases ----------------------------------------------------------------
    def update_network(
        self,
        name: str,
        command: str,
        section: str,
        xml: str,
        *,
        live: bool | None = None,
        config: bool | None = None,
        parent_index: int | None = None,
    ) -> tuple[bool, bool]:
        """``net-update``: change one element of the live network and/or its definition;
        returns which were changed: ``(live, config)``.

        Neither flag means virsh's ``--current``: the live network if it is active, else the
        definition. DHCP reservations and DNS host records reach dnsmasq with a SIGHUP; ranges,
        SRV and TXT records with a dnsmasq restart. Leases are kept either way.
        """
        with host_lock(self.host):
            active = self.catalog.active_network(name)
            definition = self.catalog.definition(name)
            if active is None and definition is None:
                raise NotFound(f"network {name!r} does not exist")
            if live is None and config is None:
                live, config = active is not None, active is None
            if live and active is None:
                raise Conflict(f"network {name!r} is not active: no live update", subject="--live")
            if live and active is not None and self.catalog.is_shared(active.backend):
                raise Unsupported(
                    f"backend {active.backend!r} has no live updates yet: update the "
                    "definition (--config) and restart the network",
                    subject="--live",
                )
            if live and section == "forward-interface":
                raise Unsupported(
                    "a forward interface changes the running firewall: update the definition "
                    "(--config) and restart the network",
                    subject="--live",
                )
            if config and definition is None:
                raise Conflict(f"network {name!r} is transient: no definition", subject="--config")
            new_live = new_config = None
            if live and active is not None:
                new_live = apply_update(
                    parse_network(active.xml), command, section, xml, parent_index
                )
                validate_network(new_live)
            if config and definition is not None:
                new_config = apply_update(
                    parse_network(definition.xml), command, section, xml, parent_index
                )
                validate_network(new_config)
            if new_live is not None and active is not None:
                self.services.call(
                    refresh_dnsmasq, self.services, new_live, active.info, section in RELOADABLE
                )
                self.store.put_active(dataclasses.replace(active, xml=format_network(new_live)))
            if new_config is not None and definition is not None:
                self.catalog.put_definition(
                    name, definition.uuid, format_network(new_config),
                    self._claim_for_storage(new_config),
                )  # fmt: skip
            return new_live is not None, new_config is not None

    def reserve_address(
        self, network: str, mac: str, address: str | None = None
    ) -> dict[str, object]:
        """An IPv4 address for ``mac`` (``address`` if given and free, else one from the
        network's DHCP range), held as a live DHCP reservation, with what the guest needs to
        use it statically (:mod:`virtnet.ipam`): for containers through CNI. The same answer
        again for the same MAC."""
        from virtnet import ipam

        with host_lock(self.host):
            return ipam.reserve(self, network, check_mac(mac, "mac"), address).as_dict()

    def release_address(self, network: str, mac: str) -> bool:
        """Drop the live reservation :meth:`reserve_address` made for ``mac``; False if there
        was none (a repeated release is no error)."""
        from virtnet import ipam

        with host_lock(self.host):
            return ipam.release(self, network, check_mac(mac, "mac"))

    def dhcp_leases(self, name: str, mac: str | None = None) -> list[DhcpLease]:
        """The network's current DHCP leases (from its dnsmasq's lease file)."""
        active = self.catalog.active_network(name)
        if active is None:
            raise Conflict(f"network {name!r} is not active")
        files = active.info.get("dnsmasq")
        if not isinstance(files, dict):
            return []
        found = DnsmasqFiles.from_dict(files)
        leases = Dnsmasq().leases(found)
        if found.member is not None:  # a shared dnsmasq's file: its group's leases
            leases = within(leases, subnets(self._parsed(active.xml)))
        if mac is not None:
            wanted = check_mac(mac, "--mac")
            leases = [lease for lease in leases if lease.mac == wanted]
        return leases

    # internals ------------------------------------------------------------------------------
    def _parse(self, xml: str, backend: str | None) -> Network:
        net = parse_network(xml)
        if backend is not None:
            self.hooks.backend_info(backend)
            set_backend_override(net, backend)
        validate_network(net)
        return net

    def _complete_and_check(self, net: Network) -> None:
        """Fill libvirt's defaults and check against every other network (lock held)."""
        existing = self.catalog.definition(net.name, strict=False)
        if existing is not None and net.uuid and net.uuid != existing.uuid:
            raise Conflict(
                f"network {net.name!r} is already defined with uuid {existing.uuid}",
                subject="network/uuid",
            )
        if existing is not None and not net.uuid:
            net.uuid = existing.uuid
            old = parse_network(existing.xml)
            if (
                old.bridge
                and old.bridge.name
                and net.mode.has_own_bridge
                and not (net.bridge and net.bridge.name)
            ):
                net.bridge = net.bridge or Bridge()
                net.bridge.name = old.bridge.name
            if not net.mac and net.mode.has_own_bridge:
                net.mac = old.mac
        definitions = self.catalog.definitions()
        defined = {d.name for d in definitions}
        xmls = [d.xml for d in definitions if d.name != net.name]
        xmls += [  # transient networks: active without a definition
            xml
            for name, xml in self.catalog.active_xml().items()
            if name != net.name and name not in defined
        ]
        others = self._defined.sync(xmls)
        complete_network(net, others.bridges, others.macs)  # only values valid by construction
        others.check(net)
        self.hooks.validate(net)

    def _claim_for_storage(self, net: Network) -> str | None:
        """The backend a definition belongs to, asked only when some backend keeps its
        networks off this host (the answer picks where the definition is stored)."""
        if not self.catalog.shared:
            return None
        return self.hooks.claim(net)[0]

    def _resolve_backend(self, net: Network) -> tuple[str, str]:
        """The backend that serves ``net`` and why, checked against its capabilities and
        readiness."""
        name, reason = self.hooks.claim(net)
        backends = self.hooks.backends()
        if name is None:
            installed = ", ".join(sorted(backends)) or "none"
            pci = net.forward is not None and bool(net.forward.pfs or net.forward.addresses)
            raise Unsupported(
                f"no installed backend serves forward mode '{net.mode.value}'"
                + (" with SR-IOV or PCI devices (<pf>, <address>)" if pci else "")
                + f" (installed backends: {installed})",
                subject=f"network {net.name!r}",
            )
        info = self.hooks.backend_info(name)
        if net.mode not in info.forward_modes:
            raise Unsupported(
                f"backend {name!r} does not serve forward mode '{net.mode.value}'",
                subject=f"network {net.name!r}",
            )
        needs = []
        if net.vlan or any(g.vlan for g in net.portgroups):
            needs.append(FEATURE_VLAN)
        if net.port_isolated or any(g.port_isolated for g in net.portgroups):
            needs.append(FEATURE_PORT_ISOLATION)
        if net.bandwidth or any(g.bandwidth for g in net.portgroups):
            needs.append(FEATURE_BANDWIDTH)
        for feature in needs:
            if feature not in info.features:
                raise Unsupported(
                    f"backend {name!r} does not support {feature}", subject=f"network {net.name!r}"
                )
        if not info.readiness.ok:
            raise Unsupported(
                f"backend {name!r} cannot run on this host: " + "; ".join(info.readiness.problems),
                subject=f"network {net.name!r}",
            )
        return name, reason

    def _complete_port(self, net: Network, port: NetworkPort) -> None:
        port.uuid = check_uuid(port.uuid, "port/uuid") if port.uuid else str(uuidlib.uuid4())
        if self.store.port(port.uuid) is not None:
            raise Conflict(f"port {port.uuid} already exists", subject="port/uuid")
        if port.mac:
            port.mac = check_mac(port.mac, "port/mac")
            if net.mac and port.mac == net.mac:
                raise InvalidInput(f"{port.mac} is the network's own MAC", subject="port/mac")
            if self.store.mac_in_use(port.mac):
                raise Conflict(
                    f"MAC {port.mac} is already used by another port", subject="port/mac"
                )
        else:
            port.mac = random_mac()
            while self.store.mac_in_use(port.mac):  # 2^24 choices: almost never loops
                port.mac = random_mac()
        group = net.portgroup(port.portgroup)
        if port.portgroup is not None and group is None:
            raise InvalidInput(
                f"network {net.name!r} has no portgroup {port.portgroup!r}",
                subject="port/portgroup",
            )
        if group is not None:
            port.portgroup = group.name
            port.vlan = port.vlan or group.vlan
            port.virtualport = port.virtualport or group.virtualport
            port.bandwidth = port.bandwidth or group.bandwidth
            if port.isolated is None:
                port.isolated = group.port_isolated
        port.vlan = port.vlan or net.vlan
        port.virtualport = port.virtualport or net.virtualport
        if port.isolated is None:
            port.isolated = net.port_isolated
        declared = port.attachment.addresses
        if declared:
            declared[:] = validate_port_addresses(net, port.mac, declared)
            for other in self.store.ports(net.name):  # only when addresses are declared
                taken = set(other.get("attachment", {}).get("addresses") or [])
                if taken & set(declared):
                    raise Conflict(
                        f"{', '.join(sorted(taken & set(declared)))} is declared by port "
                        f"{other.get('uuid')}",
                        subject="port/ip",
                    )

    def _port_status(self, name: str, net: Network, info: dict[str, Any]) -> dict[str, Any]:
        """What a backend's port hook gets: the network's status, and for a network with
        forward devices how many ports use each (a query over the network's ports, so only
        where a device is chosen: plugging stays O(1) elsewhere)."""
        counts = self.store.plug_device_counts(name) if net.forward_devices else {}
        return {**info, "plug_devices": counts}

    def _warnings(self, net: Network) -> list[str]:
        """What works but will surprise: a running network whose traffic has nowhere to go."""
        if net.mode not in (ForwardMode.NAT, ForwardMode.ROUTE) or not net.forward_devices:
            return []
        netlink = self.services.netlink
        return [
            f"forward device {dev!r} does not exist: guests reach nothing beyond the host "
            "until it does"
            for dev in net.forward_devices
            if self.services.call(netlink.index, dev) is None
        ]

    def _undefined(self, name: str, why: str = "it was created, not defined") -> VirtnetError:
        """The error for a command that needs a definition: the same words as every other
        command's for a network that does not exist at all."""
        if self.catalog.active_network(name) is not None:
            return Conflict(f"network {name!r} is transient: {why}")
        return NotFound(f"network {name!r} does not exist")

    def _parsed(self, xml: str) -> Network:
        """Other networks, parsed once per process: a long-lived embedder (or the daemon)
        checks a new network against a thousand others without re-reading their XML. The
        result is shared: callers only read it."""
        net = self._xml_cache.get(xml)
        if net is None:
            if len(self._xml_cache) > 8192:
                self._xml_cache.clear()
            net = self._xml_cache[xml] = parse_network(xml)
        return net

    def _context(self, owner: Owner | None = None) -> ApplyContext:
        return ApplyContext(
            self.host,
            self.hooks.undo_actions(),
            services=self.services,
            owner=owner.label if owner else None,
        )

    def _apply(self, plan: Plan, journal: Journal, owner: Owner) -> None:
        """Run ``plan`` in the host's namespace (see :class:`~virtnet.services.Services`);
        what it makes carries ``owner``'s label (:mod:`virtnet.ownership`)."""
        self.services.call(apply_plan, self._context(owner), plan, journal)

    def _rollback(self, *journals: Journal, teardown: str | None = None) -> list[str]:
        """Undo ``journals`` in one call into the host's namespace (a network's teardown:
        its ports' and its own, so removals are batched across them)."""
        existing = [journal for journal in journals if journal.exists()]
        if not existing:
            return []
        ctx = self._context()
        ctx.teardown = teardown
        return self.services.call(rollback_all, ctx, existing)

    def network_records(self, name: str) -> list[Undo]:
        """What the start of network ``name`` made, as its undo journal lists it."""
        return self._network_journal(name).records()

    def _network_journal(self, name: str) -> Journal:
        return Journal(self.host.run_path("journal", f"network-{name}.jsonl"))

    def _port_journal(self, uuid: str) -> Journal:
        return Journal(self.host.run_path("journal", f"port-{uuid}.jsonl"))

    def port_journal(self, uuid: str) -> Journal:
        """The undo journal made when the port was plugged: what its plan did, and when."""
        return self._port_journal(check_uuid(uuid, "port uuid"))

    def _recover(self) -> None:
        """Undo what a killed process left half-built (journals with no active object)."""
        directory = self.host.run_path("journal")
        if not directory.is_dir():
            return
        paths = sorted(directory.glob("*.jsonl"))
        active = set()
        if any(path.stem.startswith("network-") for path in paths):
            active = {a.name for a in self.store.active()}
            try:  # a shared network's start journal is removed once its record is written
                active |= {a.name for a in self.catalog.active(strict=True)}
            except VirtnetError as exc:
                log.warning("not recovering journals: shared catalog unreachable: %s", exc)
                return
        ports = {p["uuid"] for p in self.store.ports()}
        for path in paths:
            kind, _, ident = path.stem.partition("-")
            if (kind == "network" and ident not in active) or (
                kind == "port" and ident not in ports
            ):
                log.warning("undoing %s left by an interrupted operation", path.name)
                self._rollback(Journal(path))


def _port_detail(port: NetworkPort) -> dict[str, Any]:
    """What a stack tracking its guests needs in a port's events: whose it is and its link."""
    a = port.attachment
    return {
        "mac": port.mac,
        "kind": a.kind.value,
        "ifname": a.ifname,
        "netns": a.netns,
        "owner": {"name": port.owner.name, "uuid": port.owner.uuid} if port.owner else None,
        "owner_uid": a.owner_uid,
        "release_on_close": bool(a.release_on_close),
    }


__all__ = ["NetworkSummary", "Repair", "StartPlan", "Virtnet"]
