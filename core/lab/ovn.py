"""``lab up``/``lab down`` of an OVN lab: several hosts on one OVN, as the lab file says.

The lab makes (recording each namespace before it exists and each daemon's pid as it
starts): an underlay, a central namespace with the northbound and southbound databases and
ovn-northd, and one namespace per chassis with its own ovsdb-server, ovs-vswitchd and
ovn-controller (:class:`virtnet.testing.ovn.OvnCluster`); LANs whose wires a chassis's NICs
join through provider bridges (``hosts:``). Networks are started by a management virtnet in
the central namespace (they live in the northbound database, for every host); each guest's
ports are made by virtnet on the chassis the guest runs on (``guests.NAME.host``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from virtnet.api import Virtnet
from virtnet.lab.build import cable
from virtnet.lab.record import Record
from virtnet.progress import Progress
from virtnet.testing.netns import Namespace
from virtnet.testing.ovn import OvnCluster

if TYPE_CHECKING:
    from virtnet.lab.build import Builder


class _Maker:
    """The cluster's namespaces, made (and recorded) by the lab's builder."""

    def __init__(self, builder: Builder) -> None:
        self.builder = builder
        self.prefix = builder.spec.name

    def netns(self, role: str) -> Namespace:
        return self.builder.namespace(role)


@contextlib.contextmanager
def _configured(nb: str, ovsdb: str, rundir: str | None = None) -> Iterator[None]:
    """The environment the ovn backend reads, for one host at a time (``rundir``: where
    that chassis's ovn-controller keeps its pid file)."""
    wanted = {"VIRTNET_OVN_NB": nb, "VIRTNET_OVSDB": ovsdb, "VIRTNET_OVN_RUNDIR": rundir}
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _nowhere(record: Record) -> str:
    """The management host is no chassis: an Open vSwitch database that does not exist."""
    return f"unix:{record.directory}/mgmt-has-no-ovsdb.sock"


def _mgmt(record: Record) -> Virtnet:
    assert record.central is not None
    return Virtnet(record.state_dir / "mgmt", record.run_dir / "mgmt", netns=record.central)


def up_ovn(builder: Builder) -> None:
    spec, record, progress = builder.spec, builder.record, builder.progress
    progress.step(f"OVN: central and {len(spec.chassis)} chassis")
    cluster = OvnCluster(_Maker(builder), root=record.directory, on_pid=record.add_pid)
    cluster.start(list(spec.chassis))
    assert cluster.central is not None
    record.ovn_nb, record.central = cluster.central.nb, cluster.central.ns.name
    record.save()
    progress.say(f"  OVN: {', '.join(spec.chassis)} registered, Geneve between them")
    chassis = {ch.name: ch for ch in cluster.chassis}
    for lan in spec.lans:
        wire = builder.lan(lan)
        for nic in (n for n in spec.chassis_nics if n.lan == lan.name):
            ch = chassis[nic.chassis]
            cable(ch.ns, nic.name, wire, f"{nic.chassis}-{nic.name}"[:15], master="sw")
            bridge = cluster.attach_provider(ch, nic.physnet, nic.name)
            progress.say(f"  {nic.chassis}: {nic.name} on LAN {lan.name} ({nic.physnet}, {bridge})")
    with _configured(record.ovn_nb, _nowhere(record)), _mgmt(record) as vn:
        for net in spec.networks:
            xml, backend = net.xml_for("ovn")
            progress.step(f"network {net.name}: starting on OVN")
            started = vn.create_network(xml, backend=backend or "ovn")
            for ip in started.ips:
                builder.addresses.setdefault(f"host.{net.name}", ip.address)
            uplink = vn.network_info(net.name)["status"].get("uplink")
            if uplink:
                builder.addresses[f"uplink.{net.name}"] = str(uplink)
            subnets = ", ".join(f"{ip.address}/{ip.prefixlen}" for ip in started.ips)
            progress.say(
                f"  network {net.name}: started on ovn" + (f", {subnets}" if subnets else "")
            )
    for name in spec.chassis:
        guests = [g for g in spec.guests if g.host == name]
        if not guests:
            continue
        ch = chassis[name]
        with (
            _configured(record.ovn_nb, ch.ovsdb, str(ch.daemons.dir)),
            Virtnet(record.state_dir / name, record.run_dir / name, netns=ch.ns.name) as vn,
        ):
            for guest in guests:
                builder.guest(vn, guest)


def down_ovn(record: Record, progress: Progress) -> None:
    """Stop the lab's networks while the northbound database still runs (the guests' links
    go with their namespaces, the chassis's databases with their daemons)."""
    if record.central is None or not os.path.exists(f"/run/netns/{record.central}"):
        return
    assert record.ovn_nb is not None
    with (
        contextlib.suppress(Exception),
        _configured(record.ovn_nb, _nowhere(record)),
        _mgmt(record) as vn,
    ):
        for row in vn.list_networks(inactive=False):
            progress.step(f"network {row.name}: destroying")
            vn.destroy_network(row.name)


__all__ = ["down_ovn", "up_ovn"]
