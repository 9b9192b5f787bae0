"""Open vSwitch's database through the ``ovs`` library's IDL: transactions, not ovs-vsctl.

One :class:`Ovsdb` keeps one IDL session (connecting and loading the database takes a few
milliseconds; a transaction about 1-2 ms). Writes are single transactions that either apply
whole or not at all; a port's transaction then waits for ovs-vswitchd to give the interface
an OpenFlow port number, or to report why it could not (``Interface.error``), because the
database accepting a row does not mean the datapath made the port.

The database socket is ``VIRTNET_OVSDB`` (``unix:PATH`` or a path), else the system's
``/var/run/openvswitch/db.sock``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from virtnet.errors import Conflict, NotFound, OperationFailed, Unsupported
from virtnet.ownership import OVS_OWNER_KEY, owns

DEFAULT_DB = "/var/run/openvswitch/db.sock"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
#: The columns virtnet reads or writes. Registering only these keeps ovs-vswitchd's constant
#: statistics and status updates of every interface out of this process.
COLUMNS = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg"],
    "Bridge": ["name", "ports", "datapath_type", "external_ids", "other_config"],
    "Port": ["name", "interfaces", "tag", "trunks", "vlan_mode", "protected", "external_ids"],
    "Interface": [
        "name",
        "type",
        "external_ids",
        "ofport",
        "ofport_request",
        "error",
        "mtu_request",
    ],
}


def _set_size(row: Any, column: str) -> int:
    """How many values a set column holds, without materialising it: the IDL turns
    ``row.ports`` into a sorted list of rows, O(n log n) in Python on every read (1.5 ms at
    1,000 ports). The count is read from the row's datum (the IDL's own representation)."""
    datum = getattr(row, "_data", {}).get(column)
    return len(datum.values) if datum is not None else len(getattr(row, column))


def db_remote() -> str:
    raw = os.environ.get("VIRTNET_OVSDB", DEFAULT_DB)
    return raw if raw.startswith(("unix:", "tcp:", "ssl:")) else f"unix:{raw}"


def kernel_datapath_available() -> bool:
    """The openvswitch kernel module: without it, bridges use the userspace datapath."""
    return Path("/sys/module/openvswitch").exists()


class Ovsdb:
    def __init__(self, remote: str | None = None, timeout: float = 5.0) -> None:
        try:
            import ovs.db.idl
            import ovs.poller
        except ImportError:
            raise Unsupported(
                "the ovs Python library is missing (Debian: python3-openvswitch)"
            ) from None
        self._idl_mod, self._poller = ovs.db.idl, ovs.poller
        self.remote = remote or db_remote()
        helper = ovs.db.idl.SchemaHelper(location=SCHEMA)
        for table, columns in COLUMNS.items():  # not statistics: a stream of updates per port
            helper.register_columns(table, columns)
        self.idl = ovs.db.idl.Idl(self.remote, helper)
        for table in ("Bridge", "Port", "Interface"):  # name look-ups without a table scan
            self.idl.index_create(table, "name").add_column("name")
        # per bridge: (its port count when last read, the OpenFlow numbers in use)
        self._ofports: dict[str, tuple[int, set[int]]] = {}
        if not self._wait(lambda: self.idl.has_ever_connected() and self.idl.change_seqno > 0,
                          timeout):  # fmt: skip
            self.idl.close()
            raise Unsupported(f"cannot reach Open vSwitch's database at {self.remote}")

    def close(self) -> None:
        self.idl.close()

    # reading ----------------------------------------------------------------------------------
    def table(self, name: str, refresh: bool = True) -> dict[Any, Any]:
        """A table's rows; ``refresh`` first takes in the server's updates (never inside a
        transaction being built)."""
        if refresh:
            self.idl.run()
        return dict(self.idl.tables[name].rows)

    def _by_name(self, table: str, name: str, refresh: bool) -> Any | None:
        if refresh:
            self.idl.run()
        rows = self.idl.tables[table].rows
        entry = rows.IndexEntry(uuid=None, name=name)
        return next(iter(rows.indexes["name"].irange(entry, entry)), None)

    def bridge(self, name: str, refresh: bool = True) -> Any | None:
        return self._by_name("Bridge", name, refresh)

    def port(self, name: str, refresh: bool = True) -> Any | None:
        return self._by_name("Port", name, refresh)

    def interface(self, name: str, refresh: bool = True) -> Any | None:
        return self._by_name("Interface", name, refresh)

    def ofport(self, interface: str) -> int:
        """The interface's OpenFlow port: the one it asked for, else the one it was given."""
        iface = self.interface(interface)
        if iface is not None and iface.ofport_request:
            return int(iface.ofport_request[0])
        if iface is None or not iface.ofport or iface.ofport[0] < 0:
            raise NotFound(f"Open vSwitch has no OpenFlow port for {interface}", subject="port")
        return int(iface.ofport[0])

    def interface_errors(self, bridge: str) -> list[str]:
        """Interfaces of ``bridge`` that ovs-vswitchd could not add, with its reason."""
        row = self.bridge(bridge)
        found = []
        for port in row.ports if row is not None else []:
            for iface in port.interfaces:
                if iface.error or (iface.ofport and iface.ofport[0] < 0):
                    reason = iface.error[0] if iface.error else "no OpenFlow port"
                    found.append(f"interface {iface.name}: {reason}")
        return found

    def _free_ofport(self, bridge: Any) -> int:
        """An OpenFlow port number no interface of ``bridge`` has or asked for.

        The bridge's numbers are read again only when its port count is not what this
        session left it at (another process, or a delete): reading every interface on every
        plug made plugging O(ports)."""
        count = _set_size(bridge, "ports")
        cached = self._ofports.get(bridge.name)
        if cached is None or cached[0] != count:
            used = {
                n
                for port in bridge.ports
                for iface in port.interfaces
                for n in (*iface.ofport, *iface.ofport_request)
                if n > 0
            }
        else:
            used = cached[1]
        number = max(used, default=0) + 1
        if number >= 65280:
            number = next(n for n in range(1, 65280) if n not in used)
        used.add(number)
        self._ofports[bridge.name] = (count + 1, used)
        return number

    def port_names(self, bridge: str) -> list[str]:
        row = self.bridge(bridge)
        return sorted(p.name for p in row.ports) if row is not None else []

    # writing ----------------------------------------------------------------------------------
    def create_bridge(
        self,
        name: str,
        datapath_type: str,
        external_ids: dict[str, str],
        mtu: int | None,
        mac: str | None = None,
    ) -> None:
        """A bridge and its local internal port. ``mac`` pins the bridge's address (OVS would
        otherwise take the lowest MAC among its ports, changing it under the guests' ARP
        caches as ports come and go)."""
        if self.bridge(name) is not None:
            raise Conflict(f"Open vSwitch bridge {name!r} already exists", subject="bridge")

        def build(txn: Any) -> None:
            root = next(iter(self.idl.tables["Open_vSwitch"].rows.values()))
            iface = txn.insert(self.idl.tables["Interface"])
            iface.name, iface.type = name, "internal"
            if mtu:
                iface.mtu_request = [mtu]
            port = txn.insert(self.idl.tables["Port"])
            port.name, port.interfaces = name, [iface]
            br = txn.insert(self.idl.tables["Bridge"])
            br.name, br.ports, br.datapath_type = name, [port], datapath_type
            br.external_ids = external_ids
            if mac:
                br.other_config = {"hwaddr": mac}
            root.verify("bridges")
            root.bridges = [*root.bridges, br]

        self._commit(build, f"create bridge {name}")
        self._wait_interface(name)

    def delete_bridge(self, name: str, owner: str | None) -> None:
        """Delete a bridge labelled ``owner``'s (``external_ids:virtnet-owner``); one with
        that name but not that label is someone else's and stays (:class:`Conflict`)."""
        self._require_owned(self.bridge(name), "bridge", name, owner)

        def build(txn: Any) -> None:
            root = next(iter(self.idl.tables["Open_vSwitch"].rows.values()))
            row = self.bridge(name, refresh=False)
            if row is None:
                return
            root.verify("bridges")
            root.bridges = [b for b in root.bridges if b.uuid != row.uuid]

        if self.bridge(name) is not None:
            self._commit(build, f"delete bridge {name}")

    def add_port(
        self,
        bridge: str,
        name: str,
        *,
        tag: int | None,
        trunks: list[int],
        vlan_mode: str | None,
        external_ids: dict[str, str],
        protected: bool = False,
    ) -> int:
        """Add a system interface as a port; returns its OpenFlow port number.

        The number is chosen here (``ofport_request``), so the caller can install flows for
        it at once; the transaction does not wait for ovs-vswitchd, whose reconfiguration
        costs O(ports) on the userspace datapath. Whether it could add the interface shows in
        ``Interface.error``, which drift checks report (:meth:`interface_errors`).
        """
        row = self.bridge(bridge)
        if row is None:
            raise NotFound(f"Open vSwitch bridge {bridge!r} does not exist", subject="bridge")
        if self.port(name) is not None:
            raise Conflict(f"Open vSwitch already has a port {name!r}", subject="port")
        ofport = self._free_ofport(row)

        def build(txn: Any) -> None:
            br: Any = self.bridge(bridge, refresh=False)
            iface = txn.insert(self.idl.tables["Interface"])
            iface.name = name
            iface.external_ids = external_ids
            iface.ofport_request = [ofport]
            port = txn.insert(self.idl.tables["Port"])
            port.name, port.interfaces = name, [iface]
            if OVS_OWNER_KEY in external_ids:  # the label goes where delete_port looks
                port.external_ids = {OVS_OWNER_KEY: external_ids[OVS_OWNER_KEY]}
            if tag is not None:
                port.tag = [tag]
            if trunks:
                port.trunks = trunks
            if vlan_mode:
                port.vlan_mode = [vlan_mode]
            if protected:
                port.protected = True
            br.addvalue("ports", port)  # a "mutate": no rewrite of the bridge's whole port set

        self._commit(build, f"add port {name} to {bridge}", wait=False)
        return ofport

    def delete_port(self, bridge: str, name: str, owner: str | None) -> None:
        """Remove a port labelled ``owner``'s; nothing to do if it is already gone (undo must
        be idempotent); one that is not virtnet's stays (:class:`Conflict`)."""
        self._require_owned(self.port(name), "port", name, owner)

        def build(txn: Any) -> None:
            br, port = self.bridge(bridge, refresh=False), self.port(name, refresh=False)
            if br is None or port is None:
                return
            br.delvalue("ports", port)

        if self.port(name) is not None:
            self._commit(build, f"delete port {name}")

    # helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _require_owned(row: Any | None, what: str, name: str, owner: str | None) -> None:
        if row is None:
            return
        found = dict(row.external_ids).get(OVS_OWNER_KEY)
        if not owns(owner, found):
            raise Conflict(
                f"left Open vSwitch {what} {name} alone: it is not virtnet's "
                f"({'owner ' + repr(found) if found else 'no ownership label'})",
                subject=name,
            )

    def labelled(self) -> dict[str, tuple[str, str, str]]:
        """Bridges and ports carrying virtnet's label: name -> (kind, label, bridge)."""
        found: dict[str, tuple[str, str, str]] = {}
        for br in self.table("Bridge").values():
            label = dict(br.external_ids).get(OVS_OWNER_KEY)
            if label:
                found[br.name] = ("bridge", label, br.name)
            for port in br.ports:
                label = dict(port.external_ids).get(OVS_OWNER_KEY)
                if label:
                    found[port.name] = ("port", label, br.name)
        return found

    def _commit(self, build: Callable[[Any], None], what: str, wait: bool = True) -> None:
        """Commit one transaction, then (``wait``) until ovs-vswitchd has applied it
        (``next_cfg`` / ``cur_cfg``, as ovs-vsctl does): a deleted port is then gone from the
        kernel too."""
        Transaction = self._idl_mod.Transaction
        for _ in range(20):
            self.idl.run()
            txn = Transaction(self.idl)
            try:
                build(txn)
                if wait:
                    root = next(iter(self.idl.tables["Open_vSwitch"].rows.values()))
                    root.increment("next_cfg")
            except BaseException:
                txn.abort()
                raise
            status = txn.commit_block()
            if status in (Transaction.SUCCESS, Transaction.UNCHANGED):
                if wait:
                    self._wait_applied(int(txn.get_increment_new_value()))
                return
            if status != Transaction.TRY_AGAIN:
                raise OperationFailed(f"Open vSwitch refused to {what}: {txn.get_error()}")
        raise OperationFailed(f"Open vSwitch: {what}: the database kept changing under us")

    def _wait_applied(self, cfg: int) -> None:
        def applied() -> bool:
            root = next(iter(self.idl.tables["Open_vSwitch"].rows.values()))
            return int(root.cur_cfg) >= cfg

        self._wait(applied, 10.0)

    def wait_interface(self, name: str, timeout: float = 10.0) -> int:
        """Wait until ovs-vswitchd has made ``name`` a port of its datapath; returns its
        OpenFlow port number, or raises :class:`OperationFailed` with vswitchd's reason."""
        return self._wait_interface(name, timeout)

    def _wait_interface(self, name: str, timeout: float = 5.0) -> int:
        def ready() -> bool:
            iface = self.interface(name, refresh=False)
            return iface is not None and (bool(iface.error) or bool(iface.ofport))

        self._wait(ready, timeout)
        iface = self.interface(name)
        if iface is None or not iface.ofport or iface.ofport[0] < 0 or iface.error:
            error = iface.error[0] if iface is not None and iface.error else "no OpenFlow port"
            raise OperationFailed(f"ovs-vswitchd could not add interface {name}: {error}")
        return int(iface.ofport[0])

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.idl.run()
            if done():
                return True
            poller = self._poller.Poller()
            self.idl.wait(poller)
            poller.timer_wait(20)
            poller.block()
        return False
