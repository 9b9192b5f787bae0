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
  duplicate address detection and MLD only; it drops the rest, one rule per family.

Every drop is a rule of its own, so OpenFlow's flow statistics count a port's drops by reason
(:func:`guard_drops`); unlike nftables' dynamic sets they cannot name the forged source.

OpenFlow cannot read a DHCP request's client hardware address: that check is on the host
(:mod:`virtnet.services.firewall_rules`), where dnsmasq receives the request. OVS reads only
the first link-layer option of an ND message (and none when options repeat); a guest that
sends several gets them judged as if absent, which the kernel's ND (first option wins) could
take: documented in docs/security.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from virtnet.errors import OperationFailed, Unsupported
from virtnet.services.guard_rules import DROP_REASONS
from virtnet.services.ovsdb import db_remote


def mgmt_target(bridge: str) -> str:
    remote = db_remote()
    if not remote.startswith("unix:"):
        raise Unsupported("OpenFlow rules need a local Open vSwitch (a unix database socket)")
    return f"unix:{Path(remote[5:]).parent / f'{bridge}.mgmt'}"


def _ofctl(*args: str, stdin: str | None = None) -> str:
    binary = shutil.which("ovs-ofctl")
    if binary is None:
        raise Unsupported("ovs-ofctl is missing (Debian: openvswitch-common)")
    done = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    if done.returncode != 0:
        raise OperationFailed(f"ovs-ofctl {args[0]}: {done.stderr.strip()}")
    return done.stdout


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
        # the rest: each family its own rule, so a drop is counted with its reason
        f"{t2},priority=11,ip,actions=drop",
        f"{t2},priority=11,arp,actions=drop",
        f"{t2},priority=11,ipv6,actions=drop",
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


def remove_guard(bridge: str, cookie: int) -> None:
    """Drop a port's rules by their cookie: its guard's and its leases' (the lease script
    gives them the same one), and no rule that is not virtnet's, whatever it matches."""
    target = mgmt_target(bridge)
    with contextlib.suppress(OperationFailed):  # the bridge is gone: its flows with it
        _ofctl("del-flows", target, f"cookie={cookie:#x}/-1")


#: Why a guard's OpenFlow rule dropped a frame, by the reason names of the nftables guard
#: (:data:`virtnet.services.guard_rules.DROP_REASONS`) where they mean the same; OpenFlow
#: counts per rule, so the forged source itself is not known.
OVS_DROP_REASONS = {
    "dropped_mac": "its source MAC is not this port's MAC",
    "dropped4": "an IPv4 or ARP source that is not this port's lease, reservation or "
    "declared address",
    "dropped6": "an IPv6 source that is not this port's lease, reservation, declared or "
    "link-local address",
    "dropped_dhcp": DROP_REASONS["dropped_dhcp"],  # no source in these: the same words
    "dropped_ra": DROP_REASONS["dropped_ra"],
    "dropped_nd": "neighbour discovery naming another MAC, or an address not this port's",
    "dropped_other": "a protocol other than IPv4, IPv6 and ARP",
}


def drop_reason(table: int, match: set[str]) -> str:
    """The reason of one of :func:`guard_flows`' drop rules, from its table and match."""
    if table == 0:
        return "dropped_mac"
    if table == 1:
        if match & {"tp_src=67", "tp_src=547"}:
            return "dropped_dhcp"
        return "dropped_ra" if match & {"icmp_type=134", "icmp_type=137"} else "dropped_nd"
    if match & {"ip", "arp"}:
        return "dropped4"
    return "dropped6" if "ipv6" in match else "dropped_other"


_FLOW = re.compile(
    r"cookie=(?P<cookie>0x[0-9a-f]+),.*?table=(?P<table>\d+), n_packets=(?P<packets>\d+), "
    r"n_bytes=(?P<bytes>\d+),(?: idle_age=(?P<idle>\d+),)?.*? (?P<match>\S+) actions=drop$"
)


def guard_drops(bridge: str) -> list[dict[str, Any]]:
    """What the guards on ``bridge`` dropped, one entry per port cookie and reason: packets,
    bytes, seconds since the last one and ``why``. One ``dump-flows`` of the bridge, read on
    request, never on a plug's path."""
    try:
        dumped = _ofctl("dump-flows", mgmt_target(bridge))
    except OperationFailed:  # the bridge is gone: nothing of it to count
        return []
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for line in dumped.splitlines():
        flow = _FLOW.search(line.strip())
        if flow is None or int(flow["packets"]) == 0:
            continue
        reason = drop_reason(int(flow["table"]), set(flow["match"].split(",")))
        key = (int(flow["cookie"], 16), reason)
        seen = found.setdefault(key, {
            "cookie": key[0], "reason": reason, "source": None, "packets": 0, "bytes": 0,
            "seconds_ago": int(flow["idle"] or 0), "why": OVS_DROP_REASONS[reason],
        })  # fmt: skip
        seen["packets"] += int(flow["packets"])
        seen["bytes"] += int(flow["bytes"])
        seen["seconds_ago"] = min(seen["seconds_ago"], int(flow["idle"] or 0))
    return sorted(found.values(), key=lambda d: d["seconds_ago"])
