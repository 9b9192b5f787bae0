"""OpenFlow rules on an Open vSwitch bridge, through ``ovs-ofctl`` on its management socket.

Used for per-port anti-spoofing on OVS. The rules of one port are one ``add-flows`` batch
(one process, one OpenFlow bundle of flow-mods) and carry the port's cookie, so removing a
port removes exactly its rules. The management socket sits beside the database socket
(``BRIDGE.mgmt``), for the system's OVS and for a private one alike.

The same guarantees as the Linux bridge's nftables guard (:mod:`virtnet.services.guard_rules`),
in three tables:

* table 0 lets a guarded port's frames on only with the port's MAC (to table 1);
* table 1 drops what a guest must never send, whatever its source: DHCP and DHCPv6 server
  replies, router advertisements and redirects, Neighbour Solicitations and Advertisements
  whose link-layer option is another MAC, Advertisements for a target that is not one of the
  port's addresses; the rest goes on to table 2;
* table 2 passes a MAC's allowed sources to NORMAL switching: reservations, declared
  addresses, EUI-64 link-local and SLAAC (priority 100), leases (101, added and removed by
  dnsmasq's lease script), DHCP discovery, ARP probes, and the unspecified IPv6 source for
  duplicate address detection and MLD only; it drops the rest.

OpenFlow cannot read a DHCP request's client hardware address: that check is on the host
(:mod:`virtnet.services.firewall_rules`), where dnsmasq receives the request. OVS reads only
the first link-layer option of an ND message (and none when options repeat); a guest that
sends several gets them judged as if absent, which the kernel's ND (first option wins) could
take: documented in docs/security.md.
"""

from __future__ import annotations

import contextlib
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
    no_mac = "00:00:00:00:00:00"
    t1 = f"{c},table=1,dl_src={mac}"
    t2 = f"{c},table=2,dl_src={mac}"
    next_ = "actions=resubmit(,2)"
    flows = [
        f"{c},table=0,priority=200,in_port={ofport},dl_src={mac},actions=resubmit(,1)",
        f"{c},table=0,priority=190,in_port={ofport},actions=drop",
        f"{t1},priority=150,udp,tp_src=67,actions=drop",
        f"{t1},priority=150,udp6,tp_src=547,actions=drop",
        f"{t1},priority=150,icmp6,icmp_type=134,actions=drop",
        f"{t1},priority=150,icmp6,icmp_type=137,actions=drop",
        f"{t1},priority=140,icmp6,icmp_type=135,nd_sll={mac},{next_}",
        f"{t1},priority=140,icmp6,icmp_type=135,nd_sll={no_mac},{next_}",
        f"{t1},priority=139,icmp6,icmp_type=135,actions=drop",
        f"{t1},priority=139,icmp6,icmp_type=136,actions=drop",
        f"{t1},priority=10,{next_}",
        f"{t2},priority=90,udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67,actions=NORMAL",
        f"{t2},priority=90,arp,arp_sha={mac},arp_spa=0.0.0.0,actions=NORMAL",
        # the unspecified source: duplicate address detection and MLD reports only
        *(
            f"{t2},priority=90,icmp6,ipv6_src=::,icmp_type={t},actions=NORMAL"
            for t in (135, 131, 143)
        ),
        f"{t2},priority=10,actions=drop",
    ]
    return flows + [f"{c},{flow}" for flow in allow_flows(mac, addresses)]


def allow_flows(mac: str, addresses: tuple[str, ...] | list[str]) -> list[str]:
    """A MAC's static sources (table 2, priority 100) and, for IPv6, the Neighbour
    Advertisements it may send for them (table 1)."""
    flows = []
    for address in addresses:
        if ipaddress.ip_address(address).version == 4:
            flows.append(f"table=2,priority=100,ip,dl_src={mac},nw_src={address},actions=NORMAL")
            flows.append(
                f"table=2,priority=100,arp,dl_src={mac},arp_sha={mac},arp_spa={address},"
                "actions=NORMAL"
            )
        else:
            flows.append(
                f"table=2,priority=100,ipv6,dl_src={mac},ipv6_src={address},actions=NORMAL"
            )
            for tll in (mac, "00:00:00:00:00:00"):
                flows.append(
                    f"table=1,priority=140,icmp6,icmp_type=136,dl_src={mac},"
                    f"nd_target={address},nd_tll={tll},actions=resubmit(,2)"
                )
    return flows


def add_flows(bridge: str, flows: list[str]) -> None:
    _ofctl("add-flows", mgmt_target(bridge), "-", stdin="\n".join(flows) + "\n")


def remove_guard(bridge: str, cookie: int, mac: str = "") -> None:
    """Drop a port's rules by their cookie: its guard's and its leases' (the lease script
    gives them the same one), and no rule that is not virtnet's, whatever it matches."""
    target = mgmt_target(bridge)
    with contextlib.suppress(OperationFailed):  # the bridge is gone: its flows with it
        _ofctl("del-flows", target, f"cookie={cookie:#x}/-1")
