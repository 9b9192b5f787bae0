"""OVN networks' definitions and running state, kept on their logical switches in the
northbound database: every host reads the same ones (:class:`virtnet.catalog.SharedCatalog`).

A network's switch holds, in ``external_ids``, its name, its definition (``virtnet-xml``;
absent for a transient network), autostart, and while it runs the live definition, the
status the start recorded (with its undo records) and when it started. Each write is one
transaction; a define that races another host's define of the same name fails whole.
"""

from __future__ import annotations

import json
import time
from typing import Any

from virtnet.catalog import ActiveNetwork, Definition, SharedCatalog
from virtnet.errors import Conflict, NotFound
from virtnet.ownership import OVS_OWNER_KEY, Owner
from virtnet.services.ovsdb_rpc import OvsdbRpc, by_uuid, delete, expect, insert, mutate, omap, oset
from virtnet_ovn import nb
from virtnet_ovn.config import OvnConfig

_RUNTIME_KEYS = (nb.LIVE_KEY, nb.INFO_KEY, nb.STARTED_KEY, nb.STARTING_KEY)


class OvnCatalog(SharedCatalog):
    def __init__(self, config: OvnConfig, backend: str) -> None:
        self.config = config
        self.backend = backend

    def _db(self) -> OvsdbRpc:
        return self.config.connect_nb()

    def _switches(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._db() as db:
            return nb.switches(db, name=name)

    # reading --------------------------------------------------------------------------------
    def definitions(self) -> list[Definition]:
        return [_definition(r) for r in self._switches() if nb.XML_KEY in r["external_ids"]]

    def definition(self, name: str) -> Definition | None:
        found = [r for r in self._switches(name) if nb.XML_KEY in r["external_ids"]]
        return _definition(found[0]) if found else None

    def active(self) -> list[ActiveNetwork]:
        return [self._active(r) for r in self._switches() if nb.LIVE_KEY in r["external_ids"]]

    def active_network(self, name: str) -> ActiveNetwork | None:
        found = [r for r in self._switches(name) if nb.LIVE_KEY in r["external_ids"]]
        return self._active(found[0]) if found else None

    def _active(self, row: dict[str, Any]) -> ActiveNetwork:
        e = row["external_ids"]
        return ActiveNetwork(
            name=e[nb.NAME_KEY],
            uuid=e[nb.NETWORK_KEY],
            xml=e[nb.LIVE_KEY],
            backend=self.backend,
            info=json.loads(e.get(nb.INFO_KEY) or "{}"),
            started=float(e.get(nb.STARTED_KEY) or 0),
        )

    # writing --------------------------------------------------------------------------------
    def _set(self, name: str, values: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        found = self._switches(name)
        if not found:
            raise NotFound(f"network {name!r} does not exist (in OVN)")
        keys = sorted(set(values) | set(remove))
        with self._db() as db:
            change = mutate(
                "Logical_Switch",
                by_uuid(found[0]["_uuid"]),
                ["external_ids", "delete", oset(keys)],  # in order: a map insert keeps old keys
                ["external_ids", "insert", omap(values)],
            )
            db.transact(nb.DB, [change])

    def put_definition(self, name: str, uuid: str, xml: str) -> None:
        found = self._switches(name)
        if found:
            if found[0]["external_ids"].get(nb.NETWORK_KEY) != uuid:
                raise Conflict(f"network {name!r} exists in OVN with another uuid")
            self._set(name, {nb.XML_KEY: xml})
            return
        external_ids = {
            nb.NETWORK_KEY: uuid,
            nb.ROLE_KEY: "network",
            nb.NAME_KEY: name,
            nb.XML_KEY: xml,
            OVS_OWNER_KEY: Owner(uuid).label,
        }
        same_name = [
            ["external_ids", "includes", omap({nb.ROLE_KEY: "network", nb.NAME_KEY: name})]
        ]
        switch = {"name": f"vn-{name}", "external_ids": omap(external_ids)}
        with self._db() as db:
            try:  # the name must still be free when the row goes in: one transaction
                db.transact(nb.DB, [expect("Logical_Switch", same_name, [], ["name"]),
                                    insert("Logical_Switch", switch)])  # fmt: skip
            except Conflict:
                raise Conflict(
                    f"network {name!r} was defined from another host at the same time",
                    subject="network/name",
                ) from None

    def delete_definition(self, name: str) -> None:
        found = self._switches(name)
        if not found:
            return
        if nb.LIVE_KEY in found[0]["external_ids"]:  # runs on: it becomes transient
            self._set(name, {}, (nb.XML_KEY, nb.AUTOSTART_KEY))
            return
        with self._db() as db:
            db.transact(nb.DB, [delete("Logical_Switch", by_uuid(found[0]["_uuid"]))])

    def set_autostart(self, name: str, autostart: bool) -> None:
        self._set(name, {nb.AUTOSTART_KEY: "true"} if autostart else {}, (nb.AUTOSTART_KEY,))

    def put_active(self, net: ActiveNetwork) -> None:
        values = {
            nb.LIVE_KEY: net.xml,
            nb.INFO_KEY: json.dumps(net.info, sort_keys=True),
            nb.STARTED_KEY: repr(net.started or time.time()),
        }
        self._set(net.name, values, _RUNTIME_KEYS)

    def delete_active(self, name: str) -> None:
        if self._switches(name):
            self._set(name, {}, (nb.LIVE_KEY, nb.INFO_KEY, nb.STARTED_KEY))


def _definition(row: dict[str, Any]) -> Definition:
    e = row["external_ids"]
    return Definition(e[nb.NAME_KEY], e[nb.NETWORK_KEY], e[nb.XML_KEY],
                      e.get(nb.AUTOSTART_KEY) == "true")  # fmt: skip
