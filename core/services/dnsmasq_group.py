"""One dnsmasq shared by up to N networks (``dnsmasq_shared = N``): memory at scale.

A dnsmasq and its lease helper hold ~3.5 MB RSS whatever they serve (mostly the shared
libraries' pages, counted again in every process); one serving 32 networks holds ~2.3 MB
in all. So a host that runs hundreds of networks may let shareable ones
(:func:`~virtnet.services.dnsmasq_conf.shareable`: nothing DNS of their own, IPv4 only)
share dnsmasqs, N at most per process (``VIRTNET_DNSMASQ_SHARED=N`` or ``dnsmasq_shared = N``
in virtnetd.conf; 0, the default, keeps one per network). docs/performance.md weighs it:

* a network joining or leaving restarts its group's dnsmasq (SIGHUP re-reads hosts files,
  never ``dhcp-range``): ~15 ms without DHCP or DNS for the group's networks, leases kept
  (the lease file is read back); N bounds both that cost and how many networks one crash
  or one flooding guest can reach;
* names guests register over DHCP are answered to every network of the group (dnsmasq has
  no per-interface DNS views), which is why a network with DNS of its own never shares;
* a relayed request (``giaddr``) could ask for another member's range: guests' requests
  with one are dropped by the firewall (``input`` chain), shared or not.

A group is a directory: the process's files (configuration, pid, leases, lease script) and
``nets/UUID.{conf,hosts}`` per member, read through ``conf-dir``. Membership changes hold a
lock of the group's own (beside the directory, so removing the directory never orphans it).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import re
from collections.abc import Iterator
from pathlib import Path

from virtnet.errors import OperationFailed
from virtnet.services.dnsmasq import Dnsmasq, _check_reachable, _write, service_user
from virtnet.services.dnsmasq_conf import DnsmasqFiles, render_group_conf

#: Under the run directory: one sub-directory per group (g0, g1, ...).
GROUPS = "dnsmasq-shared"
_LEASE_MAX = re.compile(rb"^# lease-max (\d+)$", re.MULTILINE)


def pick(run_dir: Path, size: int) -> Path:
    """The group a starting network joins: the first with fewer than ``size`` members, else
    a new one. Two networks starting at once may both pick the last free place; a group
    then holds one more than ``size``, which costs nothing but a slightly longer restart."""
    base = run_dir / GROUPS
    index = 0
    while True:
        directory = base / f"g{index}"
        try:
            members = sum(1 for e in os.scandir(directory / "nets") if e.name.endswith(".conf"))
        except FileNotFoundError:
            return directory
        if members < size:
            return directory
        index += 1


def members(files: DnsmasqFiles) -> list[str]:
    try:
        return sorted(p.stem for p in files.members.glob("*.conf"))
    except OSError:
        return []


class DnsmasqGroup:
    """Joining, leaving and restarting a shared dnsmasq (``files`` name a member)."""

    def __init__(self, dnsmasq: Dnsmasq) -> None:
        self.dnsmasq = dnsmasq

    def join(self, files: DnsmasqFiles, fragment: str, hosts: str, script: str) -> int:
        """Add (or change) the member's part and restart the group with it; if dnsmasq
        refuses it, the group goes on as it was (the others' service is not this network's
        to break)."""
        with _locked(files):
            before = _read(files.fragment), _read(files.hosts)
            self._write(files, fragment, hosts, script)
            try:
                return self._restart(files)
            except OperationFailed:
                if before[0] is None:
                    _unlink_member(files)
                else:
                    self._write(files, before[0], before[1] or "", script)
                if members(files):
                    self._restart(files)
                raise

    def ensure(
        self, files: DnsmasqFiles, fragment: str, hosts: str, script: str, force: bool
    ) -> None:
        """Repair: the member's part in place and the group's dnsmasq running (restarted
        with ``force``: its bridge was re-made). Looked at again under the lock: a check
        that ran while another network's join restarted the group finds it back up."""
        with _locked(files):
            if (
                not force
                and self.dnsmasq.pid(files) is not None
                and files.fragment.exists()
                and files.hosts.exists()
            ):
                return
        self.join(files, fragment, hosts, script)

    def update_hosts(self, files: DnsmasqFiles, fragment: str, hosts: str) -> None:
        """The member's reservations: dnsmasq re-reads every hosts file on SIGHUP (the
        ``fragment`` is written for the group's next restart)."""
        with _locked(files):
            gid = grp.getgrnam(service_user()[1]).gr_gid
            _write(files.hosts, hosts, 0o640, gid)
            _write(files.fragment, fragment, 0o640, gid)
            self.dnsmasq.reload(files)

    def leave(self, files: DnsmasqFiles) -> int | None:
        """Remove the member; the group's dnsmasq restarts without it, or stops with the
        last (its pid is returned, to wait for)."""
        with _locked(files):
            _unlink_member(files)
            if members(files):
                self._restart(files)
                return None
            pid = self.dnsmasq.signal_stop(files)
            for path in (files.conf, files.leases, files.script):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # (its lock stays: others may wait on it)
                files.members.rmdir()
                files.directory.rmdir()
            return pid

    def _restart(self, files: DnsmasqFiles) -> int:
        if self.dnsmasq.pid(files) is not None or files.conf.exists():
            self.dnsmasq.stop(files)  # (a new group has nothing to stop: no scan of /proc)
        user, group = service_user()
        leases = sum(_lease_max(p) for p in files.members.glob("*.conf"))
        _write(files.conf, render_group_conf(files, user, group, leases), 0o600)
        return self.dnsmasq.start(files)

    def _write(self, files: DnsmasqFiles, fragment: str, hosts: str, script: str) -> None:
        """As :meth:`Dnsmasq.write_files`: dnsmasq's user re-reads the hosts files (0640,
        its group) on SIGHUP; the rest is root's."""
        user, group = service_user()
        gid = grp.getgrnam(group).gr_gid
        for directory in (files.directory, files.members):
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            os.chown(directory, 0, gid)
            directory.chmod(0o750)
        files.directory.parent.chmod(0o711)
        _check_reachable(files.directory.parent, user)
        _write(files.script, script, 0o700)
        _write(files.fragment, fragment, 0o640, gid)
        _write(files.hosts, hosts, 0o640, gid)
        if not files.leases.exists():
            _write(files.leases, "", 0o600)
        self.dnsmasq.write_upstream(files)


def _lease_max(fragment: Path) -> int:
    try:
        found = _LEASE_MAX.search(fragment.read_bytes())
    except OSError:
        return 0
    return int(found.group(1)) if found else 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _unlink_member(files: DnsmasqFiles) -> None:
    for path in (files.fragment, files.hosts, files.addn_hosts):
        path.unlink(missing_ok=True)


def _lock_path(files: DnsmasqFiles) -> Path:
    return files.directory.with_name(files.directory.name + ".lock")


@contextlib.contextmanager
def _locked(files: DnsmasqFiles) -> Iterator[None]:
    files.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(_lock_path(files), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
