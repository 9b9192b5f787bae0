"""dnsmasq's configuration for one network, rendered from the validated model (pure).

Every value that reaches a file was checked by the model's validation (names are DNS names,
addresses parse, MACs are MACs); what dnsmasq's grammar could still misread is refused here
with :class:`InvalidInput`: a line break anywhere, and ``"`` or ``\\`` in a TXT value. Nothing
from the user is ever put on a command line: dnsmasq gets ``--conf-file`` only.

Reservations (``<host>``) go to ``dhcp-hostsfile`` and DNS host records to ``addn-hosts``:
dnsmasq re-reads both on SIGHUP, so adding a reservation needs no restart and keeps leases.
The choices follow libvirt's (strict-order, except-interface=lo, dhcp-no-override,
dhcp-authoritative, router and RA suppressed on isolated networks), plus ``no-ping``: on a
bridge virtnet owns the DHCP range belongs to DHCP, and the ping check delays every first
lease by 3 s.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from virtnet.errors import InvalidInput
from virtnet.model.network import IP, DhcpHost, ForwardMode, Lease, Network


@dataclass(frozen=True)
class DnsmasqFiles:
    """Where one network's dnsmasq keeps its files: a directory of its own, or, for a
    ``member`` of a shared dnsmasq (:mod:`virtnet.services.dnsmasq_group`), the group's
    directory, where the process's files (configuration, pid, leases, lease script) are the
    group's and the network's own are under ``nets/``."""

    directory: Path
    member: str | None = None

    @property
    def script(self) -> Path:
        """The lease script (per network: its guard mechanism depends on the backend)."""
        return self.directory / "lease-event"

    @property
    def conf(self) -> Path:
        return self.directory / "dnsmasq.conf"

    @property
    def hosts(self) -> Path:
        return self._own("dhcp-hosts", "hosts")

    @property
    def addn_hosts(self) -> Path:
        return self._own("addn-hosts", "addn")

    @property
    def fragment(self) -> Path:
        """A member's part of the shared configuration (``conf-dir`` reads ``nets/*.conf``)."""
        return self._own("dnsmasq.conf", "conf")

    @property
    def members(self) -> Path:
        return self.directory / "nets"

    def _own(self, alone: str, suffix: str) -> Path:
        if self.member is None:
            return self.directory / alone
        return self.members / f"{self.member}.{suffix}"

    @property
    def leases(self) -> Path:
        return self.directory / "leases"

    @property
    def pid(self) -> Path:
        return self.directory / "dnsmasq.pid"

    @property
    def servers(self) -> Path:
        """The upstream DNS servers, shared by every network's dnsmasq (see :func:`upstream`);
        in the run dir, beside the networks' directories."""
        return self.directory.parent.parent / "dnsmasq-servers.conf"

    def as_dict(self) -> dict[str, str]:
        if self.member is None:
            return {"directory": str(self.directory)}
        return {"directory": str(self.directory), "member": self.member}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> DnsmasqFiles:
        return cls(Path(data["directory"]), data.get("member"))


def upstream(resolv_conf: str) -> str:
    """The ``servers-file`` every network's dnsmasq forwards to: the host's name servers.

    libvirt lets each dnsmasq read and poll /etc/resolv.conf; each such dnsmasq then holds an
    inotify instance, and the kernel allows 128 per user (``fs.inotify.max_user_instances``):
    the 129th network with DNS failed to start ("failed to create inotify: Too many open
    files"). virtnet reads resolv.conf itself, and virtnetd rewrites this file and sends the
    dnsmasqs SIGHUP (which re-reads it) when resolv.conf changes. Only addresses pass.
    """
    servers = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            address, _, zone = words[1].partition("%")
            try:
                ipaddress.ip_address(address)
            except ValueError:
                continue
            if zone and not zone.isalnum():
                continue
            servers.append(f"server={words[1]}")
    return "# Written by virtnet from /etc/resolv.conf.\n" + "".join(f"{s}\n" for s in servers)


def needs_dnsmasq(net: Network) -> bool:
    """libvirt runs dnsmasq for every network with an address, unless it has DNS off and
    neither DHCP nor IPv6 (router advertisements)."""
    if not net.ips or not net.mode.has_own_bridge:
        return False
    dns_on = not (net.dns and net.dns.enable is False)
    return dns_on or any(ip.dhcp for ip in net.ips) or any(ip.version == 6 for ip in net.ips)


def shareable(net: Network) -> bool:
    """The network's dnsmasq configuration is only per-interface lines (listening, DHCP
    ranges, reservations, options by tag), so a shared dnsmasq can serve it beside others
    without changing what any of them answers. Not shareable: anything DNS of its own
    (dnsmasq has no per-interface views: a shared one would answer every network with it),
    an isolated network (``no-resolv`` is process-wide), IPv6 (router advertisement
    parameters), TFTP and raw dnsmasq options."""
    return (
        net.mode in (ForwardMode.NAT, ForwardMode.ROUTE, ForwardMode.OPEN)
        and net.dns is None
        and net.domain is None
        and not net.dnsmasq_options
        and bool(net.ips)
        and all(ip.version == 4 and not ip.local_ptr and not ip.tftp_root for ip in net.ips)
    )


def tag(files: DnsmasqFiles) -> str:
    """The DHCP tag of a shared dnsmasq's member: its ranges set it, its options need it."""
    assert files.member is not None
    return "v" + files.member.replace("-", "")[:15]


def render_member(net: Network, bridge: str, files: DnsmasqFiles) -> str:
    """A shareable network's part of a shared dnsmasq's configuration (:func:`shareable`):
    its interface and addresses, its ranges setting its tag and its options taking it. The
    first lines say how many leases it may hold (the group's ``dhcp-lease-max`` is the sum)."""
    t = tag(files)
    lines = [
        f"# network uuid {net.uuid}",
        f"# lease-max {lease_max(net)}",
        f"interface={_line_safe(bridge, 'network/bridge/@name')}",
    ]
    lines += [f"listen-address={ip.address}" for ip in net.ips]
    for ip in net.ips:
        subnet = ipaddress.ip_network(f"{ip.address}/{ip.prefixlen}", strict=False)
        ranges = ip.dhcp.ranges if ip.dhcp else []
        for r in ranges:
            lines.append(f"dhcp-range=set:{t},{r.start},{r.end},{subnet.netmask}{_lease(r.lease)}")
        if ip.dhcp and ip.dhcp.hosts and not ranges:
            lines.append(f"dhcp-range=set:{t},{ip.address},static")
        if ip.dhcp and ip.dhcp.bootp:
            bootp = ip.dhcp.bootp
            file = _line_safe(bootp.file, "network/ip/dhcp/bootp/@file")
            server = f",,{bootp.server}" if bootp.server else ""
            lines.append(f"dhcp-boot=tag:{t},{file}{server}")
    if net.mtu and any(ip.dhcp for ip in net.ips):
        lines.append(f"dhcp-option=tag:{t},option:mtu,{net.mtu}")
    lines.append(f"dhcp-hostsfile={files.hosts}")
    return "\n".join(lines) + "\n"


def lease_max(net: Network) -> int:
    """Leases the network's ranges and reservations can hold (``dhcp-lease-max``); unlike
    libvirt, reservations count: each holds a lease in dnsmasq's database."""
    total = 0
    for ip in net.ips:
        for r in ip.dhcp.ranges if ip.dhcp else []:
            total += int(ipaddress.ip_address(r.end)) - int(ipaddress.ip_address(r.start)) + 1
        total += len(ip.dhcp.hosts) if ip.dhcp else 0
    return min(total, 1 << 24)


def render_group_conf(files: DnsmasqFiles, user: str, group: str, leases: int) -> str:
    """A shared dnsmasq's own configuration: what :func:`render_conf` writes for any
    shareable network, once, and its members' parts (``nets/*.conf``)."""
    return "\n".join([
        "# Written by virtnet: a dnsmasq shared by the networks under nets/.",
        "strict-order",
        # not bind-interfaces: a member whose bridge or address is missing (drift, or a
        # repair under way) would stop the group's dnsmasq from starting at all
        "bind-dynamic",
        "except-interface=lo",
        "no-resolv",
        f"servers-file={files.servers}",
        "dhcp-no-override",
        "dhcp-authoritative",
        "no-ping",
        "dhcp-ignore-clid",
        f"dhcp-lease-max={max(leases, 1)}",
        f"dhcp-leasefile={files.leases}",
        f"dhcp-script={files.script}",
        f"pid-file={files.pid}",
        f"user={user}",
        f"group={group}",
        f"conf-dir={files.members},*.conf",
    ]) + "\n"  # fmt: skip


def _line_safe(value: str, subject: str) -> str:
    if any(c in value for c in "\n\r\0"):
        raise InvalidInput("must not contain line breaks", subject=subject)
    return value


def _lease(lease: Lease | None) -> str:
    if lease is None:
        return ""
    return ",infinite" if lease.expiry == 0 else f",{lease.seconds}"


def render_conf(
    net: Network,
    bridge: str,
    files: DnsmasqFiles,
    user: str,
    group: str,
    *,
    prefix: bool = False,
) -> str:
    """``prefix``: ``bridge`` is the prefix of the network's links (a routed network without
    a bridge): dnsmasq serves every link whose name starts with it, including those made
    after it started (``bind-dynamic``: it follows links as they come and go)."""
    interface = _line_safe(bridge, "network/bridge/@name") + ("*" if prefix else "")
    lines = [
        "# Written by virtnet from the network's definition; changes here are overwritten.",
        f"# network uuid {net.uuid}",
        "strict-order",
        "bind-dynamic" if prefix else "bind-interfaces",
        "except-interface=lo",
        f"interface={interface}",
    ]
    lines += [f"listen-address={ip.address}" for ip in net.ips]
    lines += _dns_lines(net)
    if "port=0" not in lines and "no-resolv" not in lines:
        lines += ["no-resolv", f"servers-file={files.servers}"]  # see upstream()
    lines += _dhcp_lines(net)
    lines += [
        f"dhcp-hostsfile={files.hosts}",
        f"addn-hosts={files.addn_hosts}",
        f"dhcp-leasefile={files.leases}",
        f"dhcp-script={files.script}",
        f"pid-file={files.pid}",
        f"user={user}",
        f"group={group}",
    ]
    # libvirt's <dnsmasq:options>, last as libvirt writes them; reached here only where the
    # host allows them (recipes.l3_steps); still one line each
    lines += [_line_safe(o, "network/dnsmasq:options/option/@value") for o in net.dnsmasq_options]
    return "\n".join(lines) + "\n"


def _dns_lines(net: Network) -> list[str]:
    dns = net.dns
    if dns is not None and dns.enable is False:
        return ["port=0"]
    out = []
    if net.mode is ForwardMode.ISOLATED:
        out.append("no-resolv")  # as libvirt: an isolated network's DNS answers local names only
    out += [f"local=/{ptr_domain(ip)}/" for ip in net.ips if ip.local_ptr]
    if net.domain is not None:
        out += [f"domain={net.domain.name}", "expand-hosts"]
        if net.domain.local_only:
            out.append(f"local=/{net.domain.name}/")
    if dns is None:
        return out
    if dns.forward_plain_names is False:
        out += ["domain-needed", "local=//"]  # plain names answered here, never forwarded
    if any(f.addr and not f.domain for f in dns.forwarders) and "no-resolv" not in out:
        out.append("no-resolv")
    for f in dns.forwarders:
        if f.domain:  # no address: that domain goes to the usual servers ('#'), as libvirt
            out.append(f"server=/{f.domain}/{f.addr or '#'}")
        else:
            out.append(f"server={f.addr}")
    for s in dns.srvs:
        name = f"_{s.service}._{s.protocol}" + (f".{s.domain}" if s.domain else "")
        fields = [name]
        if s.target:  # libvirt's rule: a later field brings the earlier ones with defaults
            fields.append(s.target)
            if s.port is not None or s.priority is not None or s.weight is not None:
                fields.append(str(1 if s.port is None else s.port))  # dnsmasq's default port
            if s.priority is not None or s.weight is not None:
                fields.append(str(s.priority or 0))
            if s.weight is not None:
                fields.append(str(s.weight))
        out.append("srv-host=" + ",".join(fields))
    for t in dns.txts:
        if any(c in t.value for c in '"\\\n\r\0'):
            raise InvalidInput(
                "must not contain quotes, backslashes or line breaks",
                subject="network/dns/txt/@value",
            )
        out.append(f'txt-record={t.name},"{t.value}"')
    return out


def _dhcp_lines(net: Network) -> list[str]:
    out: list[str] = []
    leases = lease_max(net)
    has_v6 = False
    for ip in net.ips:
        subnet = ipaddress.ip_network(f"{ip.address}/{ip.prefixlen}", strict=False)
        if ip.version == 6:
            has_v6 = True
        ranges = ip.dhcp.ranges if ip.dhcp else []
        for r in ranges:
            if ip.version == 4:
                mask = str(subnet.netmask)
                out.append(f"dhcp-range={r.start},{r.end},{mask}{_lease(r.lease)}")
            else:
                out.append(f"dhcp-range={r.start},{r.end},{ip.prefixlen}{_lease(r.lease)}")
        if ip.dhcp and ip.dhcp.hosts and not ranges:
            # reservations only: dnsmasq needs a static range to serve them
            static = f"dhcp-range={ip.address},static"
            out.append(static if ip.version == 4 else f"{static},{ip.prefixlen}")
        if ip.version == 6 and not (ip.dhcp and (ranges or ip.dhcp.hosts)):
            out.append(f"dhcp-range={ip.address},ra-only")
        if ip.dhcp and ip.dhcp.bootp:
            bootp = ip.dhcp.bootp
            file = _line_safe(bootp.file, "network/ip/dhcp/bootp/@file")
            out.append(f"dhcp-boot={file}" + (f",,{bootp.server}" if bootp.server else ""))
        if ip.tftp_root:
            root = _line_safe(ip.tftp_root, "network/ip/tftp/@root")
            out += ["enable-tftp", f"tftp-root={root}"]
    if net.mtu and any(ip.version == 4 and ip.dhcp for ip in net.ips):
        out.append(f"dhcp-option=option:mtu,{net.mtu}")  # guests take the bridge's MTU
    if leases:
        dhcp4 = any(ip.version == 4 and ip.dhcp for ip in net.ips)
        # authoritative: DHCPv4 requests for unknown leases are answered, not ignored (as
        # libvirt), and DHCPv6 replies carry preference 255 (libvirt: 0 on IPv6-only
        # networks), so a client never waits for a better server: this bridge has no other
        out += ["dhcp-no-override", "dhcp-authoritative"] if dhcp4 else ["dhcp-authoritative"]
        if dhcp4:
            # no-ping and no-override are DHCPv4's; a lease belongs to a MAC, and the firewall
            # makes that MAC the sender's: no guest can take, renew or release a lease in
            # another's name by its client id
            out += ["no-ping", "dhcp-ignore-clid"]
        out.append(f"dhcp-lease-max={leases}")
    if has_v6:
        out.append("enable-ra")
    if net.mode is ForwardMode.ISOLATED:
        if leases:
            out.append("dhcp-option=3")  # no router: nothing is reachable through the host
        # router lifetime 0: never a default router (as libvirt, with or without IPv6 now:
        # an address added later must not turn the host into the guests' way out)
        out.append("ra-param=*,0,0")
    return out


def ptr_domain(ip: IP) -> str:
    """The reverse-DNS zone of ``ip``'s subnet (``localPtr='yes'``: answered here only);
    validation made sure its prefix ends on a label (8 bits for IPv4, 4 for IPv6)."""
    subnet = ipaddress.ip_network(f"{ip.address}/{ip.prefixlen}", strict=False)
    labels = subnet.network_address.reverse_pointer.split(".")
    per_label = 8 if ip.version == 4 else 4
    host_labels = (subnet.max_prefixlen - ip.prefixlen) // per_label
    return ".".join(labels[host_labels:])


def render_dhcp_hosts(net: Network) -> str:
    """One ``dhcp-host`` line per reservation, for ``dhcp-hostsfile``."""
    lines = []
    for ip in net.ips:
        for host in ip.dhcp.hosts if ip.dhcp else []:
            lines.append(_host_line(ip, host))
    return "".join(line + "\n" for line in lines)


def _host_line(ip: IP, host: DhcpHost) -> str:
    fields = []
    if ip.version == 4:
        if host.mac:
            fields.append(host.mac)
        if host.ip:
            fields.append(host.ip)
    else:
        if host.id:
            fields.append(f"id:{_line_safe(host.id, 'network/ip/dhcp/host/@id')}")
        if host.ip:
            fields.append(f"[{host.ip}]")
    if host.name:
        fields.append(host.name)
    if host.lease is not None:
        fields.append(_lease(host.lease)[1:])
    return ",".join(fields)


def render_addn_hosts(net: Network) -> str:
    """``<dns><host>`` records, hosts-file style, for ``addn-hosts``."""
    if net.dns is None:
        return ""
    return "".join(f"{h.ip} {' '.join(h.hostnames)}\n" for h in net.dns.hosts)


def reserved_ip(net: Network, mac: str) -> list[str]:
    """The IPv4 addresses reserved for ``mac`` (for a guarded port's allowed set)."""
    return [
        host.ip
        for ip in net.ips
        for host in (ip.dhcp.hosts if ip.dhcp else [])
        if host.mac == mac and host.ip
    ]
