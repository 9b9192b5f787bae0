"""Plans shared by backends: a network's layer-3 services, and a guest port's extras.

A backend owns its datapath (a Linux bridge, an OVS bridge) and calls these for what every
managed network needs on top of it: addresses, routes, forwarding, firewall and dnsmasq
(:func:`l3_steps`), and per-port anti-spoofing and shaping (:func:`port_extras`). The OVS
backend uses them unchanged on its internal port.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virtnet.backend import Host
from virtnet.errors import InvalidInput, OperationFailed, Unsupported
from virtnet.model.network import Bandwidth, ForwardMode, Network
from virtnet.model.port import NetworkPort
from virtnet.plan import Step
from virtnet.services import dnsmasq_conf
from virtnet.services.dnsmasq_conf import DnsmasqFiles
from virtnet.services.firewall_rules import NetworkRules, has_firewall, network_rules
from virtnet.services.guard_rules import PortGuard, eui64_address, eui64_link_local

if TYPE_CHECKING:
    from virtnet.services import Services

from virtnet.services.steps import (
    AddAddress,
    AddNetworkFirewall,
    AddRoute,
    EnableForwarding,
    GuardHostSide,
    GuardPort,
    JoinFirewalldZone,
    PinGuestMac,
    ReleaseSharedTables,
    RequireSubnetsFree,
    SetUp,
    ShapeLink,
    StartDnsmasq,
)


def dnsmasq_files(host: Host, net: Network, *, shared: bool = False) -> DnsmasqFiles:
    """The network's own dnsmasq's files; with ``shared`` (its guard takes the same lease
    script as every other's: nftables sets), a shared dnsmasq's where the host allows one
    and the network can be served by one (:mod:`virtnet.services.dnsmasq_group`)."""
    assert net.uuid is not None
    if shared and host.dnsmasq_shared > 1 and dnsmasq_conf.shareable(net):
        from virtnet.services.dnsmasq_group import pick

        return DnsmasqFiles(pick(host.run_dir, host.dnsmasq_shared), net.uuid)
    return DnsmasqFiles(host.run_path("dnsmasq", net.uuid))


def subnets(net: Network) -> tuple[str, ...]:
    return tuple(
        str(ipaddress.ip_network(f"{ip.address}/{ip.prefixlen}", strict=False)) for ip in net.ips
    )


def l3_steps(
    net: Network, bridge: str, host: Host, openflow_target: str | None = None
) -> tuple[list[Step], dict[str, object]]:
    """Steps that give the network's own ``bridge`` its addresses and services, and the facts
    to record (``dnsmasq`` files). Run after the bridge exists, before guests plug in.

    ``openflow_target``: the bridge is Open vSwitch's and its ports are guarded with OpenFlow
    rules there (DHCP leases then open those), instead of virtnet's nftables sets."""
    if net.mode in (ForwardMode.NAT, ForwardMode.ROUTE) and len(net.forward_devices) > 1:
        raise Unsupported(
            f"forward mode '{net.mode.value}' sends through one device, not "
            f"{', '.join(net.forward_devices)}",
            subject="network/forward/interface",
        )
    if net.domain is not None and net.domain.register:
        raise Unsupported(
            "virtnet does not register domains with systemd-resolved (it leaves the host's "
            "resolver alone): say register='no', and point the resolver at the network's "
            "DNS server yourself if you want (resolvectl dns/domain on the bridge)",
            subject="network/domain/@register",
        )
    steps: list[Step] = [ReleaseSharedTables()]
    info: dict[str, object] = {}
    if net.ips:
        steps.insert(0, RequireSubnetsFree(subnets(net)))
    steps += [AddAddress(bridge, ip.address, ip.prefixlen) for ip in net.ips]
    if net.bridge is not None and net.bridge.zone:
        steps.append(JoinFirewalldZone(bridge, net.bridge.zone))
    steps.append(SetUp(bridge))
    steps += [AddRoute(_route_dst(r.address, r.prefixlen), r.gateway, r.metric) for r in net.routes]
    if net.mode in (ForwardMode.NAT, ForwardMode.ROUTE):
        v6 = any(ip.version == 6 for ip in net.ips)
        steps.append(EnableForwarding(ipv4=True, ipv6=v6))
    # dnsmasq before the firewall: it starts up while the rules go in (no guest is plugged
    # in yet, so nothing reaches it before they are there)
    if net.dnsmasq_options and not host.allow_dnsmasq_options:
        raise Unsupported(
            "raw dnsmasq options bypass every check virtnet makes on what reaches dnsmasq; "
            "the host's operator allows them with VIRTNET_DNSMASQ_OPTIONS=allow (or "
            "dnsmasq_options = yes in virtnetd.conf)",
            subject="network/dnsmasq:options",
        )
    if dnsmasq_conf.needs_dnsmasq(net):
        from virtnet.services.dnsmasq import lease_script, service_user

        files = dnsmasq_files(host, net, shared=openflow_target is None)
        if files.member is not None:
            conf = dnsmasq_conf.render_member(net, bridge, files)
        else:
            conf = dnsmasq_conf.render_conf(net, bridge, files, *service_user())
        steps.append(
            StartDnsmasq(
                files,
                conf,
                dnsmasq_conf.render_dhcp_hosts(net),
                dnsmasq_conf.render_addn_hosts(net),
                lease_script(openflow_target),
            )
        )
        info["dnsmasq"] = files.as_dict()
    rules = network_rules(net, bridge)
    steps.append(AddNetworkFirewall(rules))
    if rules is not None:
        info["firewall"] = rules.key
    return steps, info


def l3_drift(services: Services, rules: NetworkRules | None, status: dict[str, Any]) -> list[str]:
    """What is missing of the network's layer 3 on the host (read only): its firewall
    elements and its dnsmasq, as its start recorded them in ``status``."""
    problems = services.firewall.network_drift(rules) if rules is not None else []
    files = status.get("dnsmasq")
    if isinstance(files, dict):
        dnsmasq = DnsmasqFiles.from_dict(files)
        if services.dnsmasq.pid(dnsmasq) is None:
            problems.append(f"dnsmasq ({dnsmasq.conf}) is not running")
    return problems


def _route_dst(address: str, prefixlen: int) -> str:
    return str(ipaddress.ip_network(f"{address}/{prefixlen}", strict=False))


def bandwidth_steps(ifname: str, ifb: str, bandwidth: Bandwidth | None, subject: str) -> list[Step]:
    if bandwidth is None or not (bandwidth.inbound or bandwidth.outbound):
        return []
    for rate in (bandwidth.inbound, bandwidth.outbound):
        if rate is not None and rate.floor:
            raise Unsupported("bandwidth floor is not supported", subject=f"{subject}/bandwidth")
    return [ShapeLink(ifname, ifb, bandwidth.inbound, bandwidth.outbound)]


def port_extras(
    net: Network, port: NetworkPort, ifname: str, status: dict[str, object]
) -> list[Step]:
    """Anti-spoofing (unless the port opted out), the host-side guard and shaping for a port
    on a managed network (a Linux bridge's: OVS guards with OpenFlow instead)."""
    assert port.uuid is not None and port.mac is not None
    steps: list[Step] = []
    guarded = guards(net, port)
    if guarded:
        guard = PortGuard(ifname, port.mac, tuple(static_ips(net, port)))
        steps.append(GuardPort(guard, lease_file(status), tuple(leased_ips(port, status, net))))
        steps.append(PinGuestMac(ifname, port.mac))
    steps += host_guard_steps(net, port)
    steps += bandwidth_steps(ifname, ifb_name(port.uuid), port.bandwidth, "port")
    return steps


def guards(net: Network, port: NetworkPort) -> bool:
    """Anti-spoofing applies: a network virtnet routes for, and the port did not opt out."""
    return net.mode.has_own_bridge and port.attachment.spoof_check is not False


def host_guard_steps(net: Network, port: NetworkPort) -> list[Step]:
    """The host-side guard of any backend's port (DHCP as itself, no isolated hairpin)."""
    assert port.mac is not None
    guarded, isolated = guards(net, port), bool(port.isolated)
    if not has_firewall(net) or not (guarded or isolated):
        return []  # no firewall on this network (open, bridge, direct modes)
    return [GuardHostSide(port.mac, guarded, isolated)]


def lease_file(status: dict[str, object]) -> str | None:
    files = status.get("dnsmasq")
    return str(Path(files["directory"]) / "leases") if isinstance(files, dict) else None


def static_ips(net: Network, port: NetworkPort) -> list[str]:
    """What a guarded port may always send from: its reservations, declared addresses,
    EUI-64 link-local and SLAAC addresses (leases come and go: :func:`leased_ips`)."""
    assert port.mac is not None
    known = dnsmasq_conf.reserved_ip(net, port.mac) + _slaac_addresses(net, port.mac)
    known += [eui64_link_local(port.mac), *port.attachment.addresses]
    return sorted(set(known))


def leased_ips(port: NetworkPort, status: dict[str, object], net: Network) -> list[str]:
    """Leases the port's MAC already holds on this network (a re-plug, a repair)."""
    path = lease_file(status)
    if path is None:
        return []
    from virtnet.services.dnsmasq import parse_leases, within

    with contextlib.suppress(OSError):
        mine = [x for x in parse_leases(Path(path).read_text()) if x.mac == port.mac]
        return sorted({x.ip for x in within(mine, subnets(net))})
    return []


def known_ips(net: Network, port: NetworkPort, status: dict[str, object]) -> list[str]:
    """Every address the port may send from now: static ones and current leases."""
    return sorted(set(static_ips(net, port)) | set(leased_ips(port, status, net)))


def _slaac_addresses(net: Network, mac: str) -> list[str]:
    """The EUI-64 addresses a guest forms from router advertisements on the network's /64s
    (privacy or stable-privacy addresses cannot be known: those guests declare them with
    ``--ip`` or opt out with ``--no-spoof-check``)."""
    return [eui64_address(f"{ip.address}/64", mac) for ip in net.ips
            if ip.version == 6 and ip.prefixlen == 64]  # fmt: skip


def port_ifname(uuid: str) -> str:
    """A host-side link name from the port's uuid: unique without a scan of the host."""
    return "vnet" + uuid.replace("-", "")[:11]


def ifb_name(uuid: str) -> str:
    return "vnb" + uuid.replace("-", "")[:12]


def host_side_mac(guest_mac: str) -> str:
    """libvirt's rule: the tap's own MAC is the guest's with 0xfe first, so the bridge never
    takes the guest's address as its own."""
    return "fe" + guest_mac[2:]


def refresh_dnsmasq(
    services: object, net: Network, status: dict[str, Any], reload_only: bool
) -> None:
    """Bring a running network's dnsmasq in line with ``net`` (``net-update --live``).

    Reservations and DNS host records are files dnsmasq re-reads on SIGHUP; anything in the
    main configuration needs a restart. The lease file is kept, so guests keep their leases.
    """
    from virtnet.services import Services
    from virtnet.services.dnsmasq import service_user

    assert isinstance(services, Services)
    data = status.get("dnsmasq")
    if not isinstance(data, dict):
        return
    files = DnsmasqFiles.from_dict(data)
    if files.member is not None:
        _refresh_member(services, net, str(status["bridge"]), files, reload_only)
        return
    user, group = service_user()
    conf = dnsmasq_conf.render_conf(net, str(status["bridge"]), files, user, group)
    hosts = dnsmasq_conf.render_dhcp_hosts(net)
    addn = dnsmasq_conf.render_addn_hosts(net)
    dnsmasq = services.dnsmasq
    if not reload_only:  # dnsmasq must accept the new configuration before the old one goes
        problem = dnsmasq.check_conf(files, conf)
        if problem is not None:
            raise InvalidInput(f"dnsmasq refuses the updated network: {problem}")
    old = {p: p.read_text() for p in (files.conf, files.hosts, files.addn_hosts)}
    dnsmasq.write_files(files, conf, hosts, addn, files.script.read_text())
    if reload_only:
        dnsmasq.reload(files)
        return
    dnsmasq.stop(files)
    try:
        dnsmasq.start(files)
    except OperationFailed:  # put the running configuration back, and dnsmasq with it
        dnsmasq.write_files(files, old[files.conf], old[files.hosts], old[files.addn_hosts],
                            files.script.read_text())  # fmt: skip
        dnsmasq.start(files)
        raise


def _refresh_member(
    services: Services, net: Network, bridge: str, files: DnsmasqFiles, reload_only: bool
) -> None:
    """:func:`refresh_dnsmasq` for a network served by a shared dnsmasq: reservations by
    SIGHUP, the rest by the group's restart (its part put back if dnsmasq refuses it). What
    would no longer be shareable (DNS records of its own) waits for the network's restart:
    the shared dnsmasq would answer every network of its group with them."""
    from virtnet.services.dnsmasq_group import DnsmasqGroup

    if not dnsmasq_conf.shareable(net):
        raise Unsupported(
            "this network shares its dnsmasq with others (VIRTNET_DNSMASQ_SHARED), which "
            "would answer them all with this change; apply it to the definition and "
            "restart the network (it then gets a dnsmasq of its own)",
            subject="network/dns",
        )
    fragment = dnsmasq_conf.render_member(net, bridge, files)
    hosts = dnsmasq_conf.render_dhcp_hosts(net)
    group = DnsmasqGroup(services.dnsmasq)
    if reload_only and _same_member(fragment, files.fragment.read_text()):
        group.update_hosts(files, fragment, hosts)  # (its lease-max counts at next restart)
        return
    group.join(files, fragment, hosts, files.script.read_text())


def _same_member(new: str, old: str) -> bool:
    """Two parts of a shared dnsmasq's configuration that differ at most in lease-max."""
    return [x for x in new.splitlines() if not x.startswith("# lease-max")] == [
        x for x in old.splitlines() if not x.startswith("# lease-max")
    ]
