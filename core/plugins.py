"""The plugin manager, and :class:`Hooks`: the only code in virtnet that calls hooks.

Backends arrive through the ``virtnet.drivers`` entry-point group (the in-tree ones exactly
like a vendor's); other extensions through ``virtnet.plugins``; an embedder or a test passes
plugin objects directly. ``VIRTNET_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import pluggy

from virtnet import hookspecs
from virtnet.backend import BackendInfo, Host
from virtnet.catalog import SharedCatalog, collect_shared
from virtnet.errors import OperationFailed, Unsupported, VirtnetError
from virtnet.events import Event, Watcher
from virtnet.model.network import Network
from virtnet.model.port import NetworkPort
from virtnet.plan import Plan, Step, UndoAction
from virtnet.plugin_loading import BrokenPlugin, first_line, load_entry_points

log = logging.getLogger(__name__)

DRIVER_GROUP = "virtnet.drivers"
PLUGIN_GROUP = "virtnet.plugins"
ENTRY_POINT_GROUPS = (DRIVER_GROUP, PLUGIN_GROUP)
BACKEND_OVERRIDE_NS = "https://virtnet.dev/xmlns/backend/1"


def make_plugin_manager(
    plugins: Iterable[object] = (), *, autoload: bool | None = None
) -> tuple[pluggy.PluginManager, list[BrokenPlugin], dict[str, str]]:
    """A plugin manager with virtnet's hookspecs, entry-point plugins and ``plugins``; the
    entry points that could not be used; plugin name -> distribution."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    from virtnet.services.actions import CoreActions  # the core's own undo actions

    pm.register(CoreActions(), name="virtnet.core")
    broken: list[BrokenPlugin] = []
    distributions: dict[str, str] = {}
    if autoload is None:
        autoload = os.environ.get("VIRTNET_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if autoload:
        broken = load_entry_points(pm, ENTRY_POINT_GROUPS, distributions)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()  # an embedder's plugin with a hook that does not exist: its own bug
    return pm, broken, distributions


def api_problem(version: str) -> str | None:
    """Why a backend written for hook API ``version`` cannot run on this core (None: it can)."""
    try:
        major, minor = (int(part) for part in version.split("."))
        ours_major, ours_minor = (int(part) for part in hookspecs.API_VERSION.split("."))
    except ValueError:
        return f"api_version {version!r} is not MAJOR.MINOR"
    if major != ours_major or minor > ours_minor:
        return (
            f"written for hook API {version}; this virtnet has {hookspecs.API_VERSION} "
            f"(usable: {ours_major}.0 to {hookspecs.API_VERSION})"
        )
    return None


class Hooks:
    """A typed facade over the plugin manager for one host.

    It knows which plugin is which backend, dispatches backend hooks to the claiming backend
    only (``subset_hook_caller``), and keeps plugin mistakes the plugin's own: a backend that
    fails to describe itself or to claim is set aside (:attr:`broken`) while the others work,
    and an error raised inside a backend's hook names the backend.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        host: Host,
        broken: list[BrokenPlugin] | None = None,
        distributions: dict[str, str] | None = None,
    ) -> None:
        self.pm = pm
        self.host = host
        #: Plugins set aside: entry points that failed to load, and backends whose describe
        #: or claim raised (or whose hook API this core cannot serve).
        self.broken: list[BrokenPlugin] = list(broken or [])
        self.distributions = distributions or {}
        self._backends: dict[str, tuple[BackendInfo, object]] | None = None
        self._callers: dict[tuple[str, str], Any] = {}
        self._shared: list[SharedCatalog] | None = None

    # backends ---------------------------------------------------------------------------
    def backends(self) -> dict[str, BackendInfo]:
        return {name: info for name, (info, _) in self._backend_map().items()}

    def _set_aside(self, plugin_name: str, stage: str, error: str) -> None:
        self.broken.append(
            BrokenPlugin(plugin_name, stage, error, self.distributions.get(plugin_name))
        )
        log.info("plugin %s set aside (%s): %s", plugin_name, stage, error)  # drivers shows it

    def _backend_map(self) -> dict[str, tuple[BackendInfo, object]]:
        if self._backends is None:
            found: dict[str, tuple[BackendInfo, object]] = {}
            for impl in self.pm.hook.virtnet_backend_describe.get_hookimpls():
                try:
                    info = _call_impl(impl, host=self.host)
                except Exception as exc:
                    self._set_aside(impl.plugin_name, "describe", first_line(exc))
                    continue
                if info is None:
                    continue
                if not isinstance(info, BackendInfo):
                    self._set_aside(impl.plugin_name, "describe", "returned no BackendInfo")
                    continue
                if info.name in found:
                    first = self.pm.get_name(found[info.name][1])
                    self._set_aside(
                        impl.plugin_name,
                        "describe",
                        f"calls itself backend {info.name!r}, which plugin {first} already is",
                    )
                    continue
                problem = api_problem(info.api_version)
                if problem is not None:
                    self._set_aside(impl.plugin_name, "api-version", problem)
                    continue
                found[info.name] = (info, impl.plugin)
            self._backends = found
        return self._backends

    def watchers(self) -> list[tuple[str, Watcher]]:
        """(plugin name, watcher) of every plugin's ``virtnet_watchers``."""
        found = []
        for impl in self.pm.hook.virtnet_watchers.get_hookimpls():
            try:
                made = _call_impl(impl, host=self.host) or []
            except VirtnetError as exc:
                log.warning("plugin %s: no watchers: %s", impl.plugin_name, exc)
                continue
            found += [(impl.plugin_name, watcher) for watcher in made]
        return found

    def shared_catalogs(self) -> list[SharedCatalog]:
        """The catalogs of backends whose networks live off this host, asked once (without
        describing the backends: a listing must not wait for their readiness probes)."""
        if self._shared is None:
            self._shared = collect_shared(
                lambda: self.pm.hook.virtnet_shared_catalog(host=self.host)
            )
        return self._shared

    def plugin_of(self, backend: str) -> str:
        """The registered plugin name (an entry point's name) of a backend."""
        return str(self.pm.get_name(self._backend_map()[backend][1]))

    def backend_info(self, name: str) -> BackendInfo:
        backends = self._backend_map()
        if name not in backends:
            installed = ", ".join(sorted(backends)) or "none"
            raise Unsupported(f"backend {name!r} is not installed (installed: {installed})")
        return backends[name][0]

    def _backend_hook(self, backend: str, hook: str) -> Any:
        key = (backend, hook)
        if key not in self._callers:
            self.backend_info(backend)
            chosen = self._backend_map()[backend][1]
            others = [p for p in self.pm.get_plugins() if p is not chosen]
            self._callers[key] = self.pm.subset_hook_caller(hook, remove_plugins=others)
        caller = self._callers[key]

        def call(**kwargs: Any) -> Any:
            try:
                return caller(**kwargs)
            except VirtnetError:
                raise  # the backend's own words for a refusal ("cannot serve ...")
            except Exception as exc:
                dist = self.distributions.get(self.plugin_of(backend))
                raise OperationFailed(
                    f"backend {backend!r}{f' ({dist})' if dist else ''} failed in {hook}: "
                    f"{first_line(exc)}"
                ) from exc

        return call

    # claiming ---------------------------------------------------------------------------
    def claim(self, network: Network) -> tuple[str | None, str]:
        """The backend for ``network`` and why: the network's own override, or which
        plugin's claim. A claim that raises sets its plugin aside and the next one is asked."""
        override = backend_override(network)
        if override is not None:
            return override, "the network names it (<virtnet:backend>, net-define --backend)"
        backends = self.backends()
        # pluggy's call order: the list's end first (tryfirst ... trylast)
        for impl in reversed(self.pm.hook.virtnet_network_claim.get_hookimpls()):
            if any(b.name == impl.plugin_name for b in self.broken):
                continue
            try:
                name = _call_impl(impl, network=network, host=self.host, backends=backends)
            except Exception as exc:
                self._set_aside(impl.plugin_name, "claim", first_line(exc))
                continue
            if name is not None:
                trylast = " (trylast: asked after other plugins)" if impl.trylast else ""
                return str(name), f"claimed by plugin {impl.plugin_name}{trylast}"
        return None, "no plugin claimed it"

    def probe_claims(self, network: Network) -> None:
        """Ask every plugin's claim about ``network`` (not stopping at the first answer), so
        ``virtnet drivers`` can show a claim that raises before a real network meets it."""
        backends = self.backends()
        for impl in self.pm.hook.virtnet_network_claim.get_hookimpls():
            if any(b.name == impl.plugin_name for b in self.broken):
                continue
            try:
                _call_impl(impl, network=network, host=self.host, backends=backends)
            except Exception as exc:
                self._set_aside(impl.plugin_name, "claim", first_line(exc))

    # backend hooks ----------------------------------------------------------------------
    def plan_start(self, backend: str, network: Network) -> Plan:
        plan = self._backend_hook(backend, "virtnet_network_plan_start")(
            network=network, host=self.host
        )
        if not isinstance(plan, Plan):
            raise OperationFailed(f"backend {backend!r} returned no plan to start {network.name!r}")
        for extra in self.pm.hook.virtnet_network_plan_extra(
            network=network, host=self.host, backend=backend
        ):
            plan.add(*(extra or []))
        return plan

    def plan_plug(
        self, backend: str, network: Network, port: NetworkPort, status: dict[str, Any]
    ) -> Plan:
        plan = self._backend_hook(backend, "virtnet_port_plan_plug")(
            network=network, port=port, host=self.host, status=status
        )
        if not isinstance(plan, Plan):
            raise Unsupported(f"backend {backend!r} cannot plug ports")
        extras: list[list[Step] | None] = self.pm.hook.virtnet_port_plan_extra(
            network=network, port=port, host=self.host, backend=backend
        )
        for extra in extras:
            plan.add(*(extra or []))
        return plan

    def check(self, backend: str, network: Network, status: dict[str, Any]) -> list[str]:
        drift = self._backend_hook(backend, "virtnet_network_check")(
            network=network, host=self.host, status=status
        )
        return list(drift or [])

    def reconcile(
        self, backend: str, network: Network, status: dict[str, Any], ports: list[NetworkPort]
    ) -> list[str]:
        done = self._backend_hook(backend, "virtnet_network_reconcile")(
            network=network, host=self.host, status=status, ports=ports
        )
        return list(done or [])

    # contributions and events -------------------------------------------------------------
    def validate(self, network: Network) -> None:
        self.pm.hook.virtnet_network_validate(network=network, host=self.host)

    def undo_actions(self) -> dict[str, UndoAction]:
        actions: dict[str, UndoAction] = {}
        for contribution in self.pm.hook.virtnet_undo_actions():
            actions.update(contribution or {})
        return actions

    def emit(self, event: Event) -> None:
        for impl in self.pm.hook.virtnet_event.get_hookimpls():
            try:
                _call_impl(impl, event=event)
            except Exception:
                log.exception("plugin %s failed on event %s", impl.plugin_name, event.kind)


def _call_impl(impl: Any, **kwargs: Any) -> Any:
    """Call one hook implementation with the arguments it asks for (as pluggy does)."""
    return impl.function(**{name: kwargs[name] for name in impl.argnames})


def backend_override(network: Network) -> str | None:
    """The backend a network asks for in ``<metadata><virtnet:backend name=.../>``."""
    if not network.metadata or BACKEND_OVERRIDE_NS not in network.metadata:
        return None
    from lxml import etree

    wrapped = f"<m>{network.metadata}</m>"
    for element in etree.fromstring(wrapped).iter(f"{{{BACKEND_OVERRIDE_NS}}}backend"):
        name = element.get("name")
        if name:
            return name
    return None


def set_backend_override(network: Network, backend: str | None) -> None:
    """Write (or with None remove) the backend override into the network's metadata."""
    from lxml import etree

    root = etree.fromstring(f"<m>{network.metadata or ''}</m>")
    for element in list(root.iter(f"{{{BACKEND_OVERRIDE_NS}}}backend")):
        root.remove(element)
    if backend:
        element = etree.SubElement(
            root, f"{{{BACKEND_OVERRIDE_NS}}}backend", nsmap={"virtnet": BACKEND_OVERRIDE_NS}
        )
        element.set("name", backend)
    parts = [etree.tostring(child, encoding="unicode").strip() for child in root]
    network.metadata = "\n".join(parts) or None
