"""OpenFlow rules on an Open vSwitch bridge, through ``ovs-ofctl`` on its management socket.

Used for per-port anti-spoofing on OVS. The rules of one port are one ``add-flows`` batch
(one process, one OpenFlow bundle of flow-mods) and carry the port's cookie, so removing a
port removes exactly its rules. The management socket sits beside the database socket
(``BRIDGE.mgmt``), for the system's OVS and for a private one alike.

Table 0 lets a guarded port's frames on only with the port's MAC (to table 1) and drops the
rest; table 1 passes a MAC's allowed sources to NORMAL switching: its reserved or leased IPv4
addresses (and ARP for them), DHCP discovery, link-local and EUI-64 IPv6, and drops the rest.
dnsmasq's lease script adds and removes table-1 rules as leases come and go.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

from virtnet.errors import OperationFailed, Unsupported
from virtnet.services.ovsdb import db_remote


def mgmt_target(bridge: str) -> str:
    remote = db_remote()
    if not remote.startswith("unix:"):
        raise Unsupported("OpenFlow rules need a local Open vSwitch (a unix database socket)")
    return f"unix:{Path(remote[5:]).parent / f'{bridge}.mgmt'}"


def _ofctl(*args: str, stdin: str | None = None) -> None:
    binary = shutil.which("ovs-ofctl")
    if binary is None:
        raise Unsupported("ovs-ofctl is missing (Debian: openvswitch-common)")
    done = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    if done.returncode != 0:
        raise OperationFailed(f"ovs-ofctl {args[0]}: {done.stderr.strip()}")


def guard_flows(cookie: int, ofport: int, mac: str, addresses: tuple[str, ...]) -> list[str]:
    c = f"cookie={cookie:#x}"
    flows = [
        f"{c},table=0,priority=200,in_port={ofport},dl_src={mac},actions=resubmit(,1)",
        f"{c},table=0,priority=190,in_port={ofport},actions=drop",
        f"{c},table=1,priority=90,udp,dl_src={mac},nw_src=0.0.0.0,tp_src=68,tp_dst=67,"
        "actions=NORMAL",
        f"{c},table=1,priority=90,arp,dl_src={mac},arp_sha={mac},arp_spa=0.0.0.0,actions=NORMAL",
        f"{c},table=1,priority=90,ipv6,dl_src={mac},ipv6_src=fe80::/10,actions=NORMAL",
        f"{c},table=1,priority=90,ipv6,dl_src={mac},ipv6_src=::,actions=NORMAL",
        f"{c},table=1,priority=10,dl_src={mac},actions=drop",
    ]
    return flows + [f"{c},{flow}" for flow in allow_flows(mac, addresses)]


def allow_flows(mac: str, addresses: tuple[str, ...] | list[str]) -> list[str]:
    flows = []
    for address in addresses:
        if ipaddress.ip_address(address).version == 4:
            flows.append(f"table=1,priority=100,ip,dl_src={mac},nw_src={address},actions=NORMAL")
            flows.append(
                f"table=1,priority=100,arp,dl_src={mac},arp_sha={mac},arp_spa={address},"
                "actions=NORMAL"
            )
        else:
            flows.append(
                f"table=1,priority=100,ipv6,dl_src={mac},ipv6_src={address},actions=NORMAL"
            )
    return flows


def add_flows(bridge: str, flows: list[str]) -> None:
    _ofctl("add-flows", mgmt_target(bridge), "-", stdin="\n".join(flows) + "\n")


def remove_guard(bridge: str, cookie: int, mac: str) -> None:
    """Drop a port's rules (by cookie) and every allowed source of its MAC (leases too)."""
    target = mgmt_target(bridge)
    try:
        _ofctl("del-flows", target, f"cookie={cookie:#x}/-1")
        _ofctl("del-flows", target, f"table=1,dl_src={mac}")
    except OperationFailed:
        pass  # the bridge is gone: its flows with it
