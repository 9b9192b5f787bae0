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
from virtnet.errors import OperationFailed, Unsupported
from virtnet.events import Event
from virtnet.model.network import Network
from virtnet.model.port import NetworkPort
from virtnet.plan import Plan, Step, UndoAction

log = logging.getLogger(__name__)

DRIVER_GROUP = "virtnet.drivers"
PLUGIN_GROUP = "virtnet.plugins"
BACKEND_OVERRIDE_NS = "https://virtnet.dev/xmlns/backend/1"


def make_plugin_manager(
    plugins: Iterable[object] = (), *, autoload: bool | None = None
) -> pluggy.PluginManager:
    """A plugin manager with virtnet's hookspecs, entry-point plugins and ``plugins``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    from virtnet.services.actions import CoreActions  # the core's own undo actions

    pm.register(CoreActions(), name="virtnet.core")
    if autoload is None:
        autoload = os.environ.get("VIRTNET_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if autoload:
        pm.load_setuptools_entrypoints(DRIVER_GROUP)
        pm.load_setuptools_entrypoints(PLUGIN_GROUP)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()  # an implementation of a hook that does not exist is a plugin bug
    return pm


class Hooks:
    """A typed facade over the plugin manager for one host.

    It knows which plugin is which backend, dispatches backend hooks to the claiming backend
    only (``subset_hook_caller``), and turns plugin mistakes into clear errors.
    """

    def __init__(self, pm: pluggy.PluginManager, host: Host) -> None:
        self.pm = pm
        self.host = host
        self._backends: dict[str, tuple[BackendInfo, object]] | None = None
        self._callers: dict[tuple[str, str], Any] = {}

    # backends ---------------------------------------------------------------------------
    def backends(self) -> dict[str, BackendInfo]:
        return {name: info for name, (info, _) in self._backend_map().items()}

    def _backend_map(self) -> dict[str, tuple[BackendInfo, object]]:
        if self._backends is None:
            found: dict[str, tuple[BackendInfo, object]] = {}
            for impl in self.pm.hook.virtnet_backend_describe.get_hookimpls():
                info = _call_impl(impl, host=self.host)
                if info is None:
                    continue
                if info.name in found:
                    raise OperationFailed(
                        f"two plugins call themselves backend {info.name!r}: "
                        f"{self.pm.get_name(found[info.name][1])} and {impl.plugin_name}"
                    )
                found[info.name] = (info, impl.plugin)
            self._backends = found
        return self._backends

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
        return self._callers[key]

    # claiming ---------------------------------------------------------------------------
    def claim(self, network: Network) -> str | None:
        override = backend_override(network)
        if override is not None:
            return override
        result: str | None = self.pm.hook.virtnet_network_claim(
            network=network, host=self.host, backends=self.backends()
        )
        return result

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
