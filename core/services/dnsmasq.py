"""Running one dnsmasq per network: start, reload, stop, and its leases as data.

dnsmasq daemonises itself and its parent exits only once the child has bound its sockets
and written its pid file, so :meth:`Dnsmasq.start` knows synchronously (about 10 ms) whether
the service came up, and reports dnsmasq's own reason when not (an address already in use,
an unusable interface). It drops privileges to an unprivileged user after binding; its lease
script keeps running as root, which is what lets it update the anti-spoofing sets.

A pid is only ever signalled after checking that ``/proc/PID/cmdline`` still names this
network's configuration file, so a recycled pid never hits a stranger.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from virtnet import pids
from virtnet.errors import OperationFailed, Unsupported
from virtnet.services.dnsmasq_conf import DnsmasqFiles, upstream


def resolv_conf() -> str:
    """Where the host's name servers are (dnsmasq would read it; virtnet does, see
    ``upstream``): /etc/resolv.conf, or ``VIRTNET_RESOLV_CONF`` (e.g. systemd-resolved's
    /run/systemd/resolve/resolv.conf, whose servers are not the 127.0.0.53 stub)."""
    return os.environ.get("VIRTNET_RESOLV_CONF", "/etc/resolv.conf")


#: Users dnsmasq may run as, best first (Debian's dnsmasq-base creates ``dnsmasq``).
USERS = ("dnsmasq", "nobody")

LEASE_SCRIPT = """#!/bin/sh
# Written by virtnet. dnsmasq runs this as root on every lease change (add, old, del). It keeps
# a guarded port's allowed sources in step with the port's lease. The values come from the
# guest's DHCP request, so each is checked against a strict pattern before it is used.
action=$1 mac=$2 ip=$3
case "$action" in add|old) verb=add ;; del) verb=delete ;; *) exit 0 ;; esac
case "$ip" in *:*) family=6; mac=${{DNSMASQ_MAC:-}} ;; *) family=4 ;; esac
x='[0-9a-f][0-9a-f]'
case "$mac" in $x:$x:$x:$x:$x:$x) ;; *) exit 0 ;; esac
case "$ip" in ""|*[!0-9a-f.:]*) exit 0 ;; esac
{guard}
exit 0
"""

#: The Linux bridge's guard: nftables set elements (virtnet.services.guard_rules). Leases
#: have sets of their own, so a lease going never removes a reservation or a declared address.
#: An IPv6 lease also opens Neighbour Advertisements for it (a raw 128-bit key: nftables
#: reads the NA's target as raw payload, so the address is given as a number).
NFT_GUARD = """elements="{{ $mac . $ip }}"
# an address leased to one MAC is never opened for another: a guest that forges another's
# DHCPv6 DUID gets that guest's lease recorded under its own MAC, and nothing more
if [ "$verb" = add ] && {nft} list set bridge virtnet leased$family 2>/dev/null |
  tr ',{{}}' '\n\n\n' | awk -v ip="$ip" -v mac="$mac" \
    '$2 == "." && $3 == ip && $1 != mac {{ held = 1 }} END {{ exit !held }}'; then
  exit 0
fi
if [ "$family" = 6 ]; then
  n=$({python} -I -S -c "import ipaddress,sys; print(int(ipaddress.ip_address(sys.argv[1])))" \
    "$ip") || exit 0
  {nft} "$verb element bridge virtnet leased_target6 {{ $mac . $n }}" 2>/dev/null
fi
{nft} "$verb element bridge virtnet leased$family $elements" 2>/dev/null"""

#: An Open vSwitch bridge's guard: OpenFlow rules (virtnet.services.openflow): a lease's
#: sources in table 2 at priority 101 (a reservation's are at 100, so deleting a lease's flow
#: never deletes a reservation's), and an IPv6 lease's Neighbour Advertisements in table 1.
OPENFLOW_GUARD = """target='{target}'
# an address leased to one MAC is never opened for another (as on a Linux bridge)
if [ "$verb" = add ]; then
  if [ "$family" = 4 ]; then held="ip,nw_src=$ip"; else held="ipv6,ipv6_src=$ip"; fi
  if {ofctl} dump-flows "$target" "table=2,$held" 2>/dev/null | grep -o 'dl_src=[0-9a-f:]*' |
    grep -qv "dl_src=$mac"; then
    exit 0
  fi
fi
na="table=1,priority=141,icmp6,icmp_type=136,dl_src=$mac,nd_target=$ip"
if [ "$family" = 4 ]; then
  set -- "table=2,priority=101,ip,dl_src=$mac,nw_src=$ip" NORMAL \
    "table=2,priority=101,arp,dl_src=$mac,arp_sha=$mac,arp_spa=$ip" NORMAL
else
  set -- "table=2,priority=101,ipv6,dl_src=$mac,ipv6_src=$ip" NORMAL \
    "$na,nd_tll=$mac" "resubmit(,2)" "$na,nd_tll=00:00:00:00:00:00" "resubmit(,2)"
fi
# the port's own cookie (virtnet's tag, then the MAC): removing the port removes its leases'
# flows with its own, and nothing that is not virtnet's
cookie="{tag:#x}$(printf %s "$mac" | tr -d :)"
while [ $# -ge 2 ]; do
  if [ "$verb" = add ]; then
    {ofctl} add-flow "$target" "cookie=$cookie,$1,actions=$2" 2>/dev/null
  else
    {ofctl} del-flows --strict "$target" "cookie=$cookie/-1,$1" 2>/dev/null
  fi
  shift 2
done"""


#: A routed network without a bridge: each lease is a host route to the guest through the
#: link its request came in on (dnsmasq names it), with virtnet's route protocol so that
#: only virtnet's routes are ever replaced or removed; an expired lease takes its route.
ROUTE_LEASES = """
if [ "$family" = 4 ]; then
  if [ "$verb" = add ]; then
    dev=${{DNSMASQ_INTERFACE:-}}
    case "$dev" in ""|*[!A-Za-z0-9_.+-]*) exit 0 ;; esac
    {ip} route replace "$ip/32" dev "$dev" proto {proto} 2>/dev/null
  else
    {ip} route del "$ip/32" proto {proto} 2>/dev/null
  fi
fi"""


def lease_script(openflow_target: str | None = None, *, route_leases: bool = False) -> str:
    """The network's lease script: nftables sets, or an OVS bridge's OpenFlow rules; with
    ``route_leases``, also a host route to each leased address (:data:`ROUTE_LEASES`)."""
    guard = _guard(openflow_target)
    if route_leases:
        from virtnet.ownership import ROUTE_PROTOCOL

        ip = shutil.which("ip") or "/usr/sbin/ip"
        guard += ROUTE_LEASES.format(ip=ip, proto=ROUTE_PROTOCOL)
    return LEASE_SCRIPT.format(guard=guard)


def _guard(openflow_target: str | None) -> str:
    if openflow_target is None:
        nft = shutil.which("nft") or "/usr/sbin/nft"
        return NFT_GUARD.format(nft=nft, python=sys.executable)
    if any(c in openflow_target for c in "'\n"):
        raise OperationFailed(f"unusable OpenFlow target {openflow_target!r}")
    from virtnet.ownership import COOKIE_TAG

    ofctl = shutil.which("ovs-ofctl") or "/usr/bin/ovs-ofctl"
    return OPENFLOW_GUARD.format(target=openflow_target, ofctl=ofctl, tag=COOKIE_TAG)


@dataclass(frozen=True)
class DhcpLease:
    """One line of dnsmasq's lease file."""

    expiry: int  # unix time; 0 means never
    mac: str | None
    ip: str
    hostname: str | None
    client_id: str | None
    iaid: str | None = None  # DHCPv6 only

    def as_dict(self) -> dict[str, object]:
        return {
            "expiry": self.expiry,
            "mac": self.mac,
            "ip": self.ip,
            "hostname": self.hostname,
            "client_id": self.client_id,
            "iaid": self.iaid,
        }


def parse_leases(text: str) -> list[DhcpLease]:
    """dnsmasq's lease file: IPv4 lines, then a ``duid`` line and IPv6 lines (IAID for MAC)."""
    leases = []
    v6 = False
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "duid":
            v6 = True
            continue
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        name = None if fields[3] == "*" else fields[3]
        client = None if len(fields) < 5 or fields[4] == "*" else fields[4]
        if v6:
            leases.append(DhcpLease(int(fields[0]), None, fields[2], name, client, fields[1]))
        else:
            leases.append(DhcpLease(int(fields[0]), fields[1], fields[2], name, client))
    return leases


def within(leases: list[DhcpLease], subnets: tuple[str, ...]) -> list[DhcpLease]:
    """The leases on ``subnets``: a shared dnsmasq's lease file holds its group's."""
    nets = [ipaddress.ip_network(s) for s in subnets]
    return [x for x in leases if any(ipaddress.ip_address(x.ip) in n for n in nets)]


def service_user() -> tuple[str, str]:
    for name in USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, grp.getgrgid(entry.pw_gid).gr_name
    raise Unsupported("no unprivileged user to run dnsmasq as (tried: " + ", ".join(USERS) + ")")


def binary() -> str:
    path = shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None
    )
    if path is None:
        raise Unsupported("dnsmasq is not installed (Debian: apt-get install dnsmasq-base)")
    return path


class Dnsmasq:
    def write_files(
        self, files: DnsmasqFiles, conf: str, hosts: str, addn_hosts: str, script: str
    ) -> None:
        """Write the configuration. dnsmasq's unprivileged user re-reads the hosts files on
        SIGHUP, so the directory (0750) and those files (0640) belong to its group; nobody
        else reads them. The lease file (opened by dnsmasq while still root) and the lease
        script (run as root) stay root's alone (0600, 0700)."""
        user, group = service_user()
        gid = grp.getgrnam(group).gr_gid
        files.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        os.chown(files.directory, 0, gid)
        files.directory.chmod(0o750)
        files.directory.parent.chmod(0o711)
        _check_reachable(files.directory.parent, user)
        _write(files.script, script, 0o700)
        for path, text in (
            (files.conf, conf),
            (files.hosts, hosts),
            (files.addn_hosts, addn_hosts),
        ):
            _write(path, text, 0o640, gid)
        if not files.leases.exists():
            _write(files.leases, "", 0o600)
        self.write_upstream(files)

    def write_upstream(self, files: DnsmasqFiles) -> bool:
        """The shared servers file (:func:`~virtnet.services.dnsmasq_conf.upstream`) from
        the host's resolv.conf; True if its content changed."""
        try:
            text = upstream(Path(resolv_conf()).read_text())
        except OSError:
            text = upstream("")
        try:
            if files.servers.read_text() == text:
                return False
        except OSError:
            pass
        _write(files.servers, text, 0o644)
        return True

    def check_conf(self, files: DnsmasqFiles, conf: str) -> str | None:
        """dnsmasq's own syntax check of ``conf`` (``--test``), without touching the running
        one; None if it is accepted, else dnsmasq's reason."""
        trial = files.directory / "dnsmasq.conf.trial"
        _write(trial, conf, 0o600)
        try:
            args = [binary(), "--test", f"--conf-file={trial}"]
            done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        finally:
            trial.unlink(missing_ok=True)
        if done.returncode == 0:
            return None
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        return lines[-1].removeprefix("dnsmasq: ")

    def start(self, files: DnsmasqFiles) -> int:
        return self.finish_start(self.spawn(files), files)

    def spawn(self, files: DnsmasqFiles) -> subprocess.Popen[str]:
        """Launch dnsmasq; it checks its configuration, binds, forks into the background and
        its first process exits, which :meth:`finish_start` waits for (a few ms that the
        caller can spend on other work)."""
        return subprocess.Popen(
            [binary(), f"--conf-file={files.conf}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish_start(self, proc: subprocess.Popen[str], files: DnsmasqFiles) -> int:
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            reason = (stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise OperationFailed(f"dnsmasq did not start: {reason.removeprefix('dnsmasq: ')}")
        pid = self.pid(files)
        if pid is None:
            raise OperationFailed(f"dnsmasq started but wrote no pid file {files.pid}")
        return pid

    def pid(self, files: DnsmasqFiles) -> int | None:
        """The running dnsmasq of ``files``, or None (no pid file, dead, or a recycled pid)."""
        try:
            pid = int(files.pid.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"--conf-file={files.conf}".encode() in cmdline.split(b"\0") else None

    def reload(self, files: DnsmasqFiles) -> None:
        """SIGHUP: dnsmasq re-reads the hosts files and the servers file; leases and sockets
        stay."""
        pid = self.pid(files)
        if pid is None:
            raise OperationFailed(f"dnsmasq of {files.directory.name} is not running")
        os.kill(pid, signal.SIGHUP)

    def stop(self, files: DnsmasqFiles, timeout: float = 2.0) -> None:
        self.wait(self.signal_stop(files), timeout)

    def signal_stop(self, files: DnsmasqFiles) -> int | None:
        """SIGTERM the network's dnsmasq; returns its pid to :meth:`wait` for (or None)."""
        pid = self.pid(files) or _find(files)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        files.pid.unlink(missing_ok=True)
        return pid

    @staticmethod
    def wait(pid: int | None, timeout: float = 2.0) -> None:
        """Until ``pid`` has exited (a few ms for dnsmasq); SIGKILL after ``timeout``."""
        if pid is not None:
            pids.wait(pid, timeout)

    def leases(self, files: DnsmasqFiles) -> list[DhcpLease]:
        try:
            return parse_leases(files.leases.read_text())
        except FileNotFoundError:
            return []


def _find(files: DnsmasqFiles) -> int | None:
    """A dnsmasq of ``files`` without its pid file: a process killed between starting it and
    dnsmasq writing the file leaves one (crash recovery; a scan of /proc, so only then)."""
    wanted = f"--conf-file={files.conf}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "cmdline").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    return None


def _check_reachable(directory: Path, user: str) -> None:
    """dnsmasq re-reads its files as ``user``: ``directory`` and its parents must be
    searchable by others."""
    for parent in [directory, *directory.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise OperationFailed(
                f"dnsmasq runs as {user!r} and cannot reach {directory}: {parent} is not "
                f"searchable by others (mode {mode & 0o777:o}); choose a run dir whose parents "
                "are (e.g. under /run)"
            )


def _write(path: Path, text: str, mode: int, gid: int | None = None) -> None:
    """Atomically (a temporary file of this thread's own, renamed over ``path``)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        if gid is not None:
            os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)
