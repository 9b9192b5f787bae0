"""Where networks are recorded: this host's store, and the shared catalogs of backends whose
networks span hosts.

Most networks live on one host: their definition is in ``virtnet.db`` and their running state
in ``runtime.db`` (:mod:`virtnet.store`). A backend like OVN serves networks that exist for
every host at once; a copy of such a definition on each host would drift, so the backend keeps
it where every host reads it (OVN's northbound database) and hands the core a
:class:`SharedCatalog` over it (hook ``virtnet_shared_catalog``). :class:`Catalog` puts the
two together so the rest of the core asks one place: a name is looked up locally first, then
in each shared catalog; a new definition goes where the backend that claims it keeps its
networks; a name is unique across all of them.

A shared network's *ports* stay in this host's store: a guest's link is a local object, made
and removed by the host the guest runs on. What its start made is kept with its shared record
(``info["undo"]``), so any host can stop it (:meth:`virtnet.api.Virtnet.destroy_network`).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from virtnet.errors import Conflict, VirtnetError
from virtnet.store import ActiveNetwork, Definition, Store

log = logging.getLogger(__name__)
#: The key of a shared network's active record that holds its start's undo records.
UNDO_KEY = "undo"
#: Seconds a shared catalog that did not answer is left out of reads before it is asked again.
DOWN_FOR = 10.0
T = TypeVar("T")


class SharedCatalog(ABC):
    """Definitions and running state of one backend's networks, kept off this host.

    Every method talks to the backend's own database; each write must be atomic there (one
    transaction). ``ActiveNetwork.info`` is stored as given (JSON values).
    """

    #: The backend whose networks these are.
    backend: str

    @abstractmethod
    def definitions(self) -> list[Definition]: ...

    @abstractmethod
    def active(self) -> list[ActiveNetwork]: ...

    @abstractmethod
    def put_definition(self, name: str, uuid: str, xml: str) -> None: ...

    @abstractmethod
    def delete_definition(self, name: str) -> None: ...

    @abstractmethod
    def set_autostart(self, name: str, autostart: bool) -> None: ...

    @abstractmethod
    def put_active(self, net: ActiveNetwork) -> None: ...

    @abstractmethod
    def delete_active(self, name: str) -> None: ...

    def definition(self, name: str) -> Definition | None:
        return next((d for d in self.definitions() if d.name == name), None)

    def active_network(self, name: str) -> ActiveNetwork | None:
        return next((a for a in self.active() if a.name == name), None)


class Catalog:
    """This host's store and the shared catalogs, asked as one (same methods as the store's
    definition and runtime tables).

    A shared catalog that cannot be reached (its database is down) is left out of reads with
    one warning, and not asked again for :data:`DOWN_FOR` seconds: this host's own networks
    stay manageable, and no command waits for a dead server's timeout each time. Writes to
    it, and reads that must not take "unknown" for "absent" (``strict``), raise instead.
    """

    def __init__(self, store: Store, shared: Callable[[], list[SharedCatalog]]) -> None:
        self.store = store
        self._shared = shared
        self._down: dict[str, float] = {}  # backend -> when it last failed to answer

    @property
    def shared(self) -> list[SharedCatalog]:
        return self._shared()

    def is_shared(self, backend: str) -> bool:
        return self._for_backend(backend) is not None

    def _for_backend(self, backend: str | None) -> SharedCatalog | None:
        return next((c for c in self.shared if c.backend == backend), None)

    def _ask(self, question: Callable[[SharedCatalog], T], strict: bool = False) -> list[T]:
        """``question`` of every shared catalog that answers (all of them, with ``strict``)."""
        answers = []
        for catalog in self.shared:
            failed = self._down.get(catalog.backend)
            if not strict and failed is not None and time.monotonic() - failed < DOWN_FOR:
                continue
            try:
                answers.append(question(catalog))
            except VirtnetError as exc:
                if strict:
                    raise
                if failed is None:
                    log.warning("%s networks left out: %s", catalog.backend, exc)
                self._down[catalog.backend] = time.monotonic()
                continue
            self._down.pop(catalog.backend, None)
        return answers

    def require(self, backend: str | None) -> None:
        """Raise if ``backend`` keeps its networks in a shared catalog that does not answer."""
        target = self._for_backend(backend)
        if target is not None:
            target.definition("")
            self._down.pop(target.backend, None)

    def _owner_of(self, name: str, strict: bool = False) -> SharedCatalog | None:
        """The shared catalog that holds network ``name`` (defined or active), if any."""
        held = self._ask(
            lambda c: c if c.definition(name) or c.active_network(name) else None, strict
        )
        return next((c for c in held if c is not None), None)

    # definitions ----------------------------------------------------------------------------
    def definitions(self) -> list[Definition]:
        found = self.store.definitions()
        for definitions in self._ask(lambda c: c.definitions()):
            found += definitions
        return sorted(found, key=lambda d: d.name)

    def definition(self, name: str, *, strict: bool = True) -> Definition | None:
        """The definition of ``name``; without ``strict``, a shared catalog that does not
        answer is taken as not holding it (a check before defining a local network)."""
        local = self.store.definition(name)
        if local is not None:
            return local
        if not strict:
            return next((d for d in self._ask(lambda c: c.definition(name)) if d), None)
        return self._look_up(lambda c: c.definition(name))

    def put_definition(self, name: str, uuid: str, xml: str, backend: str | None) -> None:
        """Store a definition where it belongs: where it already is, else where the backend
        that serves it keeps its networks (``backend``: the claim, None for none)."""
        target = self._for_backend(backend)
        local = (
            self.store.definition(name) is not None or self.store.active_network(name) is not None
        )
        elsewhere = self._owner_of(name, strict=target is not None)
        if (local and target is not None) or (elsewhere is not None and elsewhere is not target):
            where = "on this host" if local else f"by backend {elsewhere.backend!r}"  # type: ignore[union-attr]
            raise Conflict(
                f"network {name!r} is kept {where}; undefine (and destroy) it before defining "
                "it for another backend",
                subject="network/name",
            )
        if target is None:
            self.store.put_definition(name, uuid, xml)
        else:
            target.put_definition(name, uuid, xml)

    def delete_definition(self, name: str) -> None:
        if self.store.definition(name) is not None:
            self.store.delete_definition(name)
            return
        owner = self._owner_of(name, strict=True)
        if owner is not None:
            owner.delete_definition(name)

    def set_autostart(self, name: str, autostart: bool) -> None:
        if self.store.definition(name) is not None:
            self.store.set_autostart(name, autostart)
            return
        owner = self._owner_of(name, strict=True)
        if owner is not None:
            owner.set_autostart(name, autostart)

    # running state --------------------------------------------------------------------------
    def active(self, *, strict: bool = False) -> list[ActiveNetwork]:
        """Every running network; with ``strict`` a shared catalog that cannot be read
        raises instead of being left out (for who must not mistake "unknown" for "stopped")."""
        found = self.store.active()
        for active in self._ask(lambda c: c.active(), strict):
            found += active
        return sorted(found, key=lambda a: a.name)

    def active_xml(self) -> dict[str, str]:
        found = self.store.active_xml()
        for active in self._ask(lambda c: c.active()):
            found.update({a.name: a.xml for a in active})
        return found

    def active_network(self, name: str) -> ActiveNetwork | None:
        local = self.store.active_network(name)
        if local is not None:
            return local
        return self._look_up(lambda c: c.active_network(name))

    def _look_up(self, question: Callable[[SharedCatalog], T | None]) -> T | None:
        """One network's record from the shared catalogs. Not found while one of them does
        not answer is not "absent": then that catalog's error is raised."""
        return next((found for found in self._ask(question, strict=True) if found), None)

    def put_active(self, net: ActiveNetwork) -> None:
        target = self._for_backend(net.backend)
        if target is None:
            self.store.put_active(net)
        else:
            target.put_active(net)

    def delete_active(self, name: str) -> None:
        """Forget that ``name`` runs (and this host's records of its ports)."""
        if self.store.active_network(name) is not None:
            self.store.delete_active(name)
            return
        owner = self._owner_of(name, strict=True)  # before anything changes: it may not answer
        if owner is not None:
            owner.delete_active(name)
        self.store.delete_ports(name)


def collect_shared(calls: Callable[[], list[SharedCatalog | None]]) -> list[SharedCatalog]:
    """The catalogs the plugins offer; one that fails to is logged and left out (a backend
    misconfigured on this host must not stop every command about local networks)."""
    try:
        return [c for c in calls() if c is not None]
    except VirtnetError as exc:
        log.warning("a shared catalog is unavailable: %s", exc)
        return []


__all__ = ["DOWN_FOR", "UNDO_KEY", "ActiveNetwork", "Catalog", "Definition", "SharedCatalog"]
