"""What ``net-check`` finds wrong with an OVN network, and what ``net-reconcile`` puts back
on this chassis."""

from __future__ import annotations

from virtnet.errors import VirtnetError
from virtnet.model.network import Network
from virtnet.model.port import NetworkPort
from virtnet.ownership import OVS_OWNER_KEY, Owner, parse_label
from virtnet.services.ovsdb_rpc import OvsdbRpc, map_values
from virtnet_ovn import addresses as address_set
from virtnet_ovn import nb
from virtnet_ovn import ports as logical_ports
from virtnet_ovn.config import OvnConfig, chassis_name


def check(network: Network, config: OvnConfig) -> list[str]:
    """Read only: the network's rows in the northbound database, and the integration bridge."""
    assert network.uuid is not None
    problems = []
    with config.connect_nb() as db:
        found = nb.switches(db, network.uuid)
        if not found or nb.LIVE_KEY not in found[0]["external_ids"]:
            return [f"OVN logical switch of {network.name!r} is missing or not running"]
        if nb.has_router(network) and not db.select(
            nb.DB, "Logical_Router", nb.owned(network.uuid, "router"), []
        ):
            problems.append(f"OVN logical router of {network.name!r} is missing")
        wanted = sum(1 for ip in network.ips if ip.version == 4 and ip.dhcp)
        have = len(db.select(nb.DB, "DHCP_Options", nb.owned(network.uuid, "dhcp"), []))
        if have != wanted:
            problems.append(f"{have} of {wanted} DHCP_Options rows of {network.name!r} in OVN")
    try:
        with OvsdbRpc(config.ovsdb, 5.0, "Open vSwitch database") as local:
            if not local.select("Open_vSwitch", "Bridge", [["name", "==", config.bridge]], []):
                problems.append(f"integration bridge {config.bridge} is missing on this host")
    except VirtnetError as exc:
        problems.append(str(exc))
    return problems


def reconcile(
    network: Network, ports: list[NetworkPort], config: OvnConfig, scope: str | None = None
) -> list[str]:
    """This host's ports whose logical switch port is gone (deleted by hand, a restored
    database) get it back with the address they had, bound to this chassis again; logical
    ports this host's virtnet made (its scope in their label) for ports it no longer has (a
    plug rolled back while the database did not answer) are removed."""
    assert network.uuid is not None
    repairs = []
    chassis = chassis_name(config)
    mine = {port.uuid for port in ports}
    with config.connect_nb() as db:
        rows = db.select(nb.DB, "Logical_Switch_Port", nb.owned(network.uuid, "port"),
                         ["name", "external_ids"])  # fmt: skip
        present = {r["name"] for r in rows}
        for row in rows:
            label = map_values(row["external_ids"]).get(OVS_OWNER_KEY)
            owner = parse_label(label)
            if owner is None or owner.scope != scope or scope is None or row["name"] in mine:
                continue
            logical_ports.delete_port(db, str(row["name"]), str(label))
            repairs.append(f"removed OVN logical switch port {row['name']}: no port here has it")
        for port in ports:
            if port.uuid is None or port.uuid in present or port.mac is None:
                continue
            switch = str(nb.the_switch(db, network.uuid)["_uuid"])
            addresses = list(port.attachment.addresses)
            subnet = logical_ports.subnet_of(network, addresses[0]) if addresses else None
            dhcp = logical_ports.dhcp_options_of(db, network.uuid).get(subnet or "")
            guarded = port.attachment.spoof_check is not False
            groups = nb.groups_of(network, bool(port.isolated), guarded)
            label = Owner(network.uuid, port.uuid, scope).label
            address = " ".join([port.mac, *addresses])
            try:
                keep = address_set.keep_ops(network.uuid, addresses)
                logical_ports.add_port(db, network.uuid, port.uuid, address, guarded, chassis,
                                       dhcp, groups, switch, keep, port.bandwidth,
                                       label)  # fmt: skip
            except VirtnetError as exc:
                repairs.append(f"could not re-create OVN port {port.uuid}: {exc}")
                continue
            repairs.append(f"re-created OVN logical switch port {port.uuid}")
    return repairs
