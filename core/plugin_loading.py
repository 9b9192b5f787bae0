"""Loading plugins from entry points, one at a time, so one broken plugin breaks only itself.

pluggy's own loader stops at the first plugin that fails to import and takes every command
down with it. Here each entry point is imported and registered on its own; a failure is kept
as a :class:`BrokenPlugin` (its distribution, its entry point and the error's first line) for
``virtnet drivers`` to show, and every other plugin goes on working.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata

import pluggy


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin virtnet could not use, and why."""

    name: str  # the entry point's name (or the plugin's registered name)
    stage: str  # import | register | describe | claim | api-version
    error: str  # one line
    distribution: str | None = None  # "name version" of the installed distribution
    entry_point: str | None = None  # "group: name = module:attr"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "usable": False,
            "stage": self.stage,
            "error": self.error,
            "distribution": self.distribution,
            "entry_point": self.entry_point,
        }

    def line(self) -> str:
        where = ", ".join(x for x in (self.distribution, self.entry_point) if x)
        return f"{self.name}: UNUSABLE ({self.stage} failed{': ' + where if where else ''}): " + (
            self.error
        )


def first_line(exc: BaseException) -> str:
    """``Type: message``'s first line: enough to recognise the error, never a traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def distribution_of(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    return f"{dist.metadata['Name']} {dist.version}"


def load_entry_points(
    pm: pluggy.PluginManager, groups: tuple[str, ...], distributions: dict[str, str]
) -> list[BrokenPlugin]:
    """Register every entry point of ``groups`` not registered yet; returns the broken ones.

    ``distributions`` is filled with plugin name -> distribution, for error messages that
    name the package to blame. Called again (``rescan``), it picks up newly installed
    distributions and retries the broken ones; a plugin already loaded is not reloaded.
    """
    importlib.invalidate_caches()  # a distribution installed since the last scan
    broken = []
    for group in groups:
        for ep in metadata.entry_points(group=group):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            dist = distribution_of(ep)
            where = f"{group}: {ep.name} = {ep.value}"
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a plugin's import is its own business
                broken.append(BrokenPlugin(ep.name, "import", first_line(exc), dist, where))
                continue
            try:
                pm.register(plugin, name=ep.name)
                pm.check_pending()  # an implementation of a hook that does not exist
            except Exception as exc:
                if pm.get_plugin(ep.name) is not None:
                    pm.unregister(name=ep.name)
                broken.append(BrokenPlugin(ep.name, "register", first_line(exc), dist, where))
                continue
            if dist:
                distributions[ep.name] = dist
    return broken


__all__ = ["BrokenPlugin", "first_line", "load_entry_points"]
