"""The whole contract between virtnet's core and its plugins.

There are two kinds of plugin:

* **Backends** (Linux bridge, Open vSwitch, macvtap, a vendor's) implement
  :func:`virtnet_backend_describe` and the *backend hooks* below. The core calls a backend
  hook only on the backend that claimed the network, so a backend never sees another
  backend's networks.
* **Extensions** (firewall policy, QoS, audit, an embedding stack's callbacks, test fault
  injectors) implement any of the *contribution* and *event* hooks; those are called on every
  plugin.

Every hook takes keyword arguments with the same names everywhere (``network``, ``port``,
``host``, ``backend``, ``status``); an implementation may accept only those it needs.

Backends do not touch the host while planning. They return a :class:`~virtnet.plan.Plan` of
steps; the core runs it, journals each step's undo first, rolls back on failure, and later
tears the object down by running that journal backwards. So a backend has no cleanup code
paths of its own to get wrong: what it must get right is that every step's ``undo()``
reverses it, even when ``apply()`` stopped half-way.

Built-in backends mark their ``virtnet_network_claim`` ``trylast`` so that a third-party
plugin's claim is asked first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from virtnet.backend import BackendInfo, Host
    from virtnet.catalog import SharedCatalog
    from virtnet.events import Event, Watcher
    from virtnet.model.network import Network
    from virtnet.model.port import NetworkPort
    from virtnet.plan import Plan, Step, UndoAction

PROJECT = "virtnet"
#: The version of this contract (hooks, their arguments, the value types in
#: :mod:`virtnet.backend`, the ``ApplyContext`` steps and undo actions use). A backend says
#: which version it was written for in ``BackendInfo.api_version``; the core uses it when
#: the majors are equal and the backend's minor is not newer than the core's (minors only
#: add: new optional hooks, new keyword arguments, new fields with defaults; a major removes
#: or changes something). See docs/backend-guide.md, "Versions".
API_VERSION = "1.1"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Hooks the core calls only on the backend that claimed the network.
BACKEND_HOOKS = (
    "virtnet_network_plan_start",
    "virtnet_port_plan_plug",
    "virtnet_network_check",
    "virtnet_network_reconcile",
)


# --- registration -------------------------------------------------------------------------
@hookspec
def virtnet_backend_describe(host: Host) -> BackendInfo | None:
    """Say who you are, what you can serve, and whether this host can run you.

    Called when the plugin manager is set up and by ``virtnet drivers``. Return a
    :class:`~virtnet.backend.BackendInfo` whose ``name`` is unique among backends, with the
    forward modes and attachment kinds you implement, your features (``vlan``,
    ``port-isolation``, ...) and a :class:`~virtnet.backend.Readiness` from probing the host
    (kernel modules, daemons, binaries). Probing must be cheap and must not change the host.
    Extensions that are not backends do not implement this hook.
    """


@hookspec
def virtnet_shared_catalog(host: Host) -> SharedCatalog | None:
    """Return the catalog of your networks if they live off this host (since API 1.1).

    A backend whose networks span hosts (OVN) keeps their definitions and running state in a
    database every host shares, so each host's ``net-list`` shows the same networks and a
    define on one host is seen on the others (:mod:`virtnet.catalog`). Return None when this
    host is not configured for you. The core then stores a network you claim in your catalog
    instead of this host's store, keeps your start plan's undo records in its active record
    (so any host can stop it: your start steps must act only on the shared database), and
    keeps the ports on the host that made them. Raise :class:`~virtnet.errors.VirtnetError`
    if the catalog cannot be reached: commands about local networks then go on without it.
    """


@hookspec
def virtnet_watchers(host: Host) -> list[Watcher] | None:
    """Return watchers virtnetd runs, each on a thread of its own, for the daemon's life
    (since API 1.1): for what happens outside virtnet's own calls that a stack wants to hear
    of, such as OVN reporting a port up or down. A watcher is ``run(emit, stop)``: call
    ``emit(event)`` for each event and return once ``stop`` (a ``threading.Event``) is set;
    it must survive its source going away (reconnect, and say so in the log).
    """


# --- claiming -----------------------------------------------------------------------------
@hookspec(firstresult=True)
def virtnet_network_claim(
    network: Network, host: Host, backends: dict[str, BackendInfo]
) -> str | None:
    """Name the backend that should serve ``network``, or return None to pass.

    Called on define and start, unless the network names its backend itself (``<metadata>``
    ``<virtnet:backend name='...'/>``, set by ``net-define --backend``). The first non-None
    answer wins. A backend usually claims networks by libvirt's rules for its modes; a
    policy plugin may route networks to any backend in ``backends``. The core then checks
    the chosen backend supports the network's forward mode and features and is ready.
    """


# --- backend hooks (called only on the claiming backend) ----------------------------------
@hookspec(firstresult=True)
def virtnet_network_plan_start(network: Network, host: Host) -> Plan:
    """Return the steps that bring ``network`` up on your datapath.

    Called by ``net-start``/``net-create`` after validation and claiming. Do not touch the
    host here; raise :class:`~virtnet.errors.Unsupported` or ``InvalidInput`` for what you
    cannot serve. Put facts worth keeping (bridge name, files) in ``Plan.info``. Stopping
    the network undoes these steps in reverse; there is no separate stop hook.
    """


@hookspec(firstresult=True)
def virtnet_port_plan_plug(
    network: Network, port: NetworkPort, host: Host, status: dict[str, Any]
) -> Plan:
    """Return the steps that make the guest's link and plug it into ``network``.

    Called by ``net-port-create`` on an active network. ``port`` arrives with its uuid and MAC
    chosen and its portgroup resolved; fill in ``port.plug`` and ``port.attachment`` (names of
    what the steps will create) before returning. ``status`` is the network's runtime status
    (its ``Plan.info``), plus ``plug_devices``: how many of the network's ports use each
    ``plug.dev`` (for choosing from a device pool; empty for a network without forward
    devices). Unplugging undoes the steps in reverse.
    """


@hookspec(firstresult=True)
def virtnet_network_check(network: Network, host: Host, status: dict[str, Any]) -> list[str]:
    """Compare the running ``network`` with the host; return one line per drift found.

    Called by ``net-check`` and by the daemon's drift watcher. Read only: report a missing
    bridge, flushed rules, a dead dnsmasq; an empty list means in sync.
    """


@hookspec(firstresult=True)
def virtnet_network_reconcile(
    network: Network, host: Host, status: dict[str, Any], ports: list[NetworkPort]
) -> list[str]:
    """Bring the datapath back in line with virtnet's ports; return one line per repair.

    Called by ``net-reconcile`` (and the daemon after a restart of the backend or its
    switch). ``ports`` are the network's ports as virtnet recorded them. Remove what the
    datapath holds for ports whose guest link is gone, and re-attach links the datapath lost.
    A backend with nothing to reconcile need not implement it.
    """


# --- contribution hooks (called on every plugin) ------------------------------------------
@hookspec
def virtnet_network_validate(network: Network, host: Host) -> None:
    """Reject a definition by raising :class:`~virtnet.errors.InvalidInput`.

    Called on define, create and start, after the core's own checks. Use it for site policy
    (allowed subnets, naming rules) or backend-specific limits.
    """


@hookspec
def virtnet_network_plan_extra(network: Network, host: Host, backend: str) -> list[Step] | None:
    """Return steps to run after the backend's start plan (QoS, extra firewall rules, audit).

    They are journalled with the network's own steps, so they are undone on stop.
    """


@hookspec
def virtnet_port_plan_extra(
    network: Network, port: NetworkPort, host: Host, backend: str
) -> list[Step] | None:
    """Return steps to run after the backend's plug plan; undone on unplug."""


@hookspec
def virtnet_undo_actions() -> dict[str, UndoAction] | None:
    """Register undo actions by name: ``{"mydriver.thing.delete": func}``.

    ``func(ctx, args)`` reverses one step from the plain ``args`` its ``Step.undo()`` recorded;
    it must succeed when the thing is already gone, since it also runs after crashes. Prefix
    names with your plugin's name.
    """


# --- events (called on every plugin) ------------------------------------------------------
@hookspec
def virtnet_event(event: Event) -> None:
    """Observe a lifecycle event after it happened (network defined/started/stopped, port
    plugged/unplugged, lease added/expired). Exceptions raised here are logged, not fatal."""
