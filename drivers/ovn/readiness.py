"""Can this host serve OVN networks now? Cheap reads only: the northbound database answers,
the local Open vSwitch database names this chassis with an encapsulation address and has
the integration bridge, ovn-controller runs and answers, and the southbound database lists
the chassis (ovn-controller registered it).

Only an unreachable northbound database is a problem: a host that is no chassis (or whose
ovn-controller is down) still defines, starts and stops networks for the others; what it
cannot do, plug guests, is said in the notes."""

from __future__ import annotations

import importlib.util

from virtnet.backend import Readiness
from virtnet.errors import VirtnetError
from virtnet.services.ovsdb_rpc import OvsdbRpc
from virtnet_ovn.config import NB_ENV, OvnConfig, local_chassis
from virtnet_ovn.controller import controller_problem

PROBE_TIMEOUT = 2.0


def probe(config: OvnConfig | None) -> Readiness:
    if config is None:
        return Readiness((f"not configured: set {NB_ENV} (or [driver.ovn] nb in virtnetd.conf)",))
    problems: list[str] = []
    notes: list[str] = []
    if importlib.util.find_spec("ovs") is None:
        problems.append("the ovs Python library is missing (Debian: python3-openvswitch)")
    try:
        with OvsdbRpc(config.nb, PROBE_TIMEOUT, "OVN northbound database") as nb:
            nb.select("OVN_Northbound", "NB_Global", [], ["nb_cfg"])
    except VirtnetError as exc:
        problems.append(str(exc))
    try:
        local = local_chassis(config)
    except VirtnetError as exc:
        notes.append(f"not a chassis (networks can be defined and started, not plugged): {exc}")
        return Readiness(tuple(problems), tuple(notes))
    if not local.name:
        notes.append("not a chassis: no external_ids:system-id in the local Open vSwitch")
    if not local.encap_ip:
        notes.append("no external_ids:ovn-encap-ip: other chassis cannot tunnel to this one")
    if not local.bridge_exists:
        notes.append(f"no integration bridge {config.bridge} (ovn-controller makes it)")
    if local.name:
        stopped = controller_problem(config.rundir)
        if stopped:
            notes.append(f"{stopped}: guests plugged here would never be bound")
    if local.name and local.sb_remote:
        try:
            with OvsdbRpc(local.sb_remote, PROBE_TIMEOUT, "OVN southbound database") as sb:
                rows = sb.select("OVN_Southbound", "Chassis", [["name", "==", local.name]], [])
            if not rows:
                notes.append(f"chassis {local.name} is not registered: is ovn-controller running?")
        except VirtnetError as exc:
            notes.append(str(exc))
    return Readiness(tuple(problems), tuple(notes))
