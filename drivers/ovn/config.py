"""Where this host's OVN is: the northbound database, the local Open vSwitch database, the
chassis name and the integration bridge.

Read from the environment, which virtnetd fills from its settings file (``[driver.ovn]``)
and its ``--driver-option ovn.KEY=VALUE`` options, so the CLI, the daemon and an embedder
configure the backend the same way:

===========================  ===========================================================
``VIRTNET_OVN_NB``           the northbound database (``tcp:HOST:6641``, ``unix:PATH``);
                             unset: this host has no OVN networks
``VIRTNET_OVSDB``            the local Open vSwitch database (shared with the ovs backend)
``VIRTNET_OVN_CHASSIS``      this host's chassis name; default: the local database's
                             ``external_ids:system-id`` (what ovn-controller registers)
``VIRTNET_OVN_BRIDGE``       the integration bridge; default ``br-int``
``VIRTNET_OVN_RUNDIR``       where ovn-controller keeps its pid file and control socket;
                             default ``$OVN_RUNDIR`` (as OVN's own tools), else
                             ``/var/run/ovn``
===========================  ===========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from virtnet.errors import OperationFailed, Unsupported
from virtnet.services.ovsdb import db_remote
from virtnet.services.ovsdb_rpc import OvsdbRpc, map_values

NB_ENV = "VIRTNET_OVN_NB"
NB_WHAT = "OVN northbound database"


@dataclass(frozen=True)
class OvnConfig:
    nb: str
    ovsdb: str
    chassis: str | None
    bridge: str
    rundir: str = "/var/run/ovn"

    @classmethod
    def from_env(cls) -> OvnConfig | None:
        nb = os.environ.get(NB_ENV, "").strip()
        if not nb:
            return None
        return cls(
            nb=nb,
            ovsdb=db_remote(),
            chassis=os.environ.get("VIRTNET_OVN_CHASSIS") or None,
            bridge=os.environ.get("VIRTNET_OVN_BRIDGE") or "br-int",
            rundir=os.environ.get("VIRTNET_OVN_RUNDIR")
            or os.environ.get("OVN_RUNDIR")
            or "/var/run/ovn",
        )

    def connect_nb(self, timeout: float = 10.0) -> OvsdbRpc:
        return OvsdbRpc(self.nb, timeout, NB_WHAT)


def require_config() -> OvnConfig:
    config = OvnConfig.from_env()
    if config is None:
        raise Unsupported(f"no OVN northbound database configured ({NB_ENV}, or [driver.ovn] nb)")
    return config


@dataclass(frozen=True)
class LocalChassis:
    """What the local Open vSwitch database says about this host as an OVN chassis."""

    name: str | None
    encap_ip: str | None
    sb_remote: str | None
    bridge_exists: bool


def local_chassis(config: OvnConfig) -> LocalChassis:
    """One read of the local database (Open_vSwitch's external_ids, the integration bridge)."""
    with OvsdbRpc(config.ovsdb, 5.0, "Open vSwitch database") as db:
        rows = db.select("Open_vSwitch", "Open_vSwitch", [], ["external_ids"])
        ids = map_values(rows[0]["external_ids"]) if rows else {}
        bridges = db.select("Open_vSwitch", "Bridge", [["name", "==", config.bridge]], ["name"])
    return LocalChassis(
        name=config.chassis or ids.get("system-id"),
        encap_ip=ids.get("ovn-encap-ip"),
        sb_remote=ids.get("ovn-remote"),
        bridge_exists=bool(bridges),
    )


def chassis_name(config: OvnConfig) -> str:
    name = local_chassis(config).name
    if not name:
        raise OperationFailed(
            "this host is no OVN chassis: its Open vSwitch database has no "
            "external_ids:system-id (or set VIRTNET_OVN_CHASSIS)"
        )
    return name
