"""State: persistent definitions and runtime status, in SQLite.

``<state_dir>/virtnet.db`` keeps what must survive a reboot (definitions, autostart);
``<run_dir>/runtime.db`` keeps what a reboot must forget, like libvirt's /run status files
(which networks are active with which live definition and backend, their ports). SQLite gives
atomic, crash-safe updates and lets many processes read while one writes; the host lock
(:func:`virtnet.host.host_lock`) orders the writers.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from virtnet.backend import Host
from virtnet.host import prepare_dirs

T = TypeVar("T")

_DEFINITIONS = """
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    xml TEXT NOT NULL,
    autostart INTEGER NOT NULL DEFAULT 0
);
"""
_RUNTIME = """
CREATE TABLE IF NOT EXISTS active (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    xml TEXT NOT NULL,
    backend TEXT NOT NULL,
    info TEXT NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ports (
    uuid TEXT PRIMARY KEY,
    network TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ports_by_network ON ports (network);
CREATE INDEX IF NOT EXISTS ports_by_mac ON ports (json_extract(data, '$.mac'));
"""


@dataclass(frozen=True)
class Definition:
    name: str
    uuid: str
    xml: str
    autostart: bool


@dataclass
class ActiveNetwork:
    name: str
    uuid: str
    xml: str  # the live definition, as started
    backend: str
    info: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    new = not path.exists()
    # check_same_thread off: virtnetd shares one Store between its threads, under its lock
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    if new:
        path.chmod(0o600)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(schema)
    return conn


class Store:
    """Typed access to both databases; every write is one transaction."""

    def __init__(self, host: Host) -> None:
        prepare_dirs(host)
        self._defs = _connect(host.state_dir / "virtnet.db", _DEFINITIONS)
        self._run = _connect(host.run_dir / "runtime.db", _RUNTIME)
        self._writes = 0  # this Store's commits: SQLite's data_version counts only others'
        self._cache: dict[str, tuple[tuple[int, int], Any]] = {}

    def _cached(self, conn: sqlite3.Connection, what: str, read: Callable[[], T]) -> T:
        """``read()``, or what it gave last time if no connection has written since:
        every network's XML is read for the clash checks of each start, ~1.5 ms at 1,000
        networks, and ``PRAGMA data_version`` (changed by any other connection's commit,
        another process's too) costs microseconds. This store's own writes patch the
        cache (:meth:`_patch`) instead of emptying it."""
        version = (self._data_version(conn), self._writes)
        hit = self._cache.get(what)
        if hit is not None and hit[0] == version:
            return cast(T, hit[1])
        value = read()
        self._cache[what] = (version, value)
        return value

    def _patch(self, conn: sqlite3.Connection, what: str, change: Callable[[Any], None]) -> None:
        """After this store's write: ``change`` the cached value if it was current just
        before it (no one else wrote in between), else forget it."""
        hit = self._cache.pop(what, None)
        version = (self._data_version(conn), self._writes)
        if hit is not None and hit[0] == (version[0], version[1] - 1):
            change(hit[1])
            self._cache[what] = (version, hit[1])

    @staticmethod
    def _data_version(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self._defs.close()
        self._run.close()

    @contextmanager
    def _tx(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        self._writes += 1  # before, not after: a commit that raises may still have landed
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # definitions ------------------------------------------------------------------------
    def definitions(self) -> list[Definition]:
        def read() -> dict[str, Definition]:
            rows = self._defs.execute("SELECT name, uuid, xml, autostart FROM networks")
            return {r[0]: Definition(r[0], r[1], r[2], bool(r[3])) for r in rows}

        found = self._cached(self._defs, "definitions", read)
        return [found[name] for name in sorted(found)]

    def definition(self, name: str) -> Definition | None:
        row = self._defs.execute(
            "SELECT name, uuid, xml, autostart FROM networks WHERE name = ?", (name,)
        ).fetchone()
        return Definition(row[0], row[1], row[2], bool(row[3])) if row else None

    def put_definition(self, name: str, uuid: str, xml: str) -> None:
        with self._tx(self._defs) as tx:
            tx.execute(
                "INSERT INTO networks (name, uuid, xml) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET xml = excluded.xml, uuid = excluded.uuid",
                (name, uuid, xml),
            )

        def put(found: dict[str, Definition]) -> None:
            old = found.get(name)
            found[name] = Definition(name, uuid, xml, old.autostart if old else False)

        self._patch(self._defs, "definitions", put)

    def delete_definition(self, name: str) -> None:
        with self._tx(self._defs) as tx:
            tx.execute("DELETE FROM networks WHERE name = ?", (name,))
        self._patch(self._defs, "definitions", lambda found: found.pop(name, None))

    def set_autostart(self, name: str, autostart: bool) -> None:
        with self._tx(self._defs) as tx:
            tx.execute("UPDATE networks SET autostart = ? WHERE name = ?", (int(autostart), name))

        def mark(found: dict[str, Definition]) -> None:
            if name in found:
                found[name] = dataclasses.replace(found[name], autostart=autostart)

        self._patch(self._defs, "definitions", mark)

    # runtime ----------------------------------------------------------------------------
    def active(self) -> list[ActiveNetwork]:
        rows = self._run.execute(
            "SELECT name, uuid, xml, backend, info, started FROM active ORDER BY name"
        )
        return [ActiveNetwork(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def active_xml(self) -> dict[str, str]:
        """Name -> live XML of every active network (no status decoding: conflict checks)."""

        def read() -> dict[str, str]:
            return dict(self._run.execute("SELECT name, xml FROM active").fetchall())

        return dict(self._cached(self._run, "active_xml", read))

    def active_network(self, name: str) -> ActiveNetwork | None:
        row = self._run.execute(
            "SELECT name, uuid, xml, backend, info, started FROM active WHERE name = ?", (name,)
        ).fetchone()
        return (
            ActiveNetwork(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])
            if row
            else None
        )

    def put_active(self, net: ActiveNetwork) -> None:
        with self._tx(self._run) as tx:
            tx.execute(
                "INSERT OR REPLACE INTO active (name, uuid, xml, backend, info, started) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    net.name,
                    net.uuid,
                    net.xml,
                    net.backend,
                    json.dumps(net.info),
                    net.started or time.time(),
                ),
            )
        self._patch(self._run, "active_xml", lambda found: found.__setitem__(net.name, net.xml))

    def delete_active(self, name: str) -> None:
        with self._tx(self._run) as tx:
            tx.execute("DELETE FROM active WHERE name = ?", (name,))
            tx.execute("DELETE FROM ports WHERE network = ?", (name,))
        self._patch(self._run, "active_xml", lambda found: found.pop(name, None))

    # ports ------------------------------------------------------------------------------
    def delete_ports(self, network: str) -> None:
        """Forget this host's ports of ``network`` (a shared network stopped elsewhere)."""
        with self._tx(self._run) as tx:
            tx.execute("DELETE FROM ports WHERE network = ?", (network,))

    def ports(self, network: str | None = None) -> list[dict[str, Any]]:
        if network is None:
            rows = self._run.execute("SELECT data FROM ports ORDER BY created")
        else:
            rows = self._run.execute(
                "SELECT data FROM ports WHERE network = ? ORDER BY created", (network,)
            )
        return [json.loads(r[0]) for r in rows]

    def port_networks(self) -> list[tuple[str, str, float | None]]:
        """(uuid, network, the network's start time when it was plugged, for a shared
        network) of every port: what a sweep needs, without the data."""
        rows = self._run.execute(
            "SELECT uuid, network, json_extract(data, '$.network_started') FROM ports "
            "ORDER BY created"
        )
        return [(str(u), str(n), None if t is None else float(t)) for u, n, t in rows]

    def plug_device_counts(self, network: str) -> dict[str, int]:
        """How many of ``network``'s ports are plugged into each device (``plug.dev``)."""
        rows = self._run.execute(
            "SELECT json_extract(data, '$.plug.dev'), count(*) FROM ports "
            "WHERE network = ? AND json_extract(data, '$.plug.dev') IS NOT NULL "
            "GROUP BY 1",
            (network,),
        )
        return {str(dev): int(n) for dev, n in rows}

    def port(self, uuid: str) -> dict[str, Any] | None:
        row = self._run.execute("SELECT data FROM ports WHERE uuid = ?", (uuid,)).fetchone()
        return json.loads(row[0]) if row else None

    def mac_in_use(self, mac: str) -> bool:
        """Is ``mac`` some port's MAC (an index lookup, not a scan)?"""
        row = self._run.execute(
            "SELECT 1 FROM ports WHERE json_extract(data, '$.mac') = ?", (mac,)
        ).fetchone()
        return row is not None

    def put_port(self, uuid: str, network: str, data: dict[str, Any]) -> None:
        with self._tx(self._run) as tx:
            tx.execute(
                "INSERT OR REPLACE INTO ports (uuid, network, data, created) VALUES (?, ?, ?, ?)",
                (uuid, network, json.dumps(data), time.time()),
            )

    def delete_port(self, uuid: str) -> None:
        with self._tx(self._run) as tx:
            tx.execute("DELETE FROM ports WHERE uuid = ?", (uuid,))
