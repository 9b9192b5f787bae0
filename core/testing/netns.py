"""Uniquely named network namespaces, veth "cables" between them, and guaranteed cleanup.

Guaranteed even when the process that made them is killed (``kill -9`` of a test run or of
``virtnet conformance``): each lab writes a record of its namespaces, with its maker's pid
and start time, and :func:`reap_stale` (run when a test session or a conformance run starts)
removes the namespaces of labs whose maker is gone, and every process left in them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from virtnet.host import enter_netns, filesystem_type

T = TypeVar("T")

#: One file per lab that made a namespace: ``{"pid", "start", "namespaces"}``.
RECORDS = Path("/run/virtnet-test-labs")


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Namespace:
    """A network namespace this test made; ``ip(...)``/``exec(...)`` run commands in it."""

    name: str

    def exec(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.name, *args, check=check, timeout=timeout)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "-n", self.name, *args, check=check)

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], text=True, **kwargs)  # type: ignore[call-overload,no-any-return]

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a short-lived thread inside this namespace: the sockets and files it
        opens stay there (raw sockets of a guest, a tap opened by name). What ``fn`` raises
        is raised here."""
        out: list[T] = []
        errors: list[BaseException] = []

        def inside() -> None:
            try:
                enter_netns(self.name)
                out.append(fn())
            except BaseException as exc:  # re-raised in the caller
                errors.append(exc)

        thread = threading.Thread(target=inside)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return out[0]

    def links(self) -> set[str]:
        out = self.ip("-o", "link", "show").stdout
        return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}

    def pids(self) -> list[int]:
        out = run("ip", "netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def nft_tables(self) -> list[str]:
        out = self.exec("nft", "list", "tables", check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]


@dataclass
class Lab:
    """A set of namespaces made for one test, all removed by :meth:`cleanup`.

    Names are ``vt<random>-<role>`` so parallel runs and leftovers never collide.
    """

    prefix: str = field(default_factory=lambda: "vt" + uuid.uuid4().hex[:6])
    namespaces: list[Namespace] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def netns(self, role: str) -> Namespace:
        ns = Namespace(f"{self.prefix}-{role}")
        self.namespaces.append(ns)
        self._record()  # before it exists: a kill right after must not leave it unrecorded
        run("ip", "netns", "add", ns.name)
        ns.ip("link", "set", "lo", "up")
        return ns

    def cable(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A veth pair from ``a`` (named ``a_if``) to ``b`` (``b_if``), both ends up."""
        tmp = "vc" + uuid.uuid4().hex[:8]
        a.ip("link", "add", tmp, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.ip("link", "set", tmp, "name", a_if)
        a.ip("link", "set", a_if, "up")
        b.ip("link", "set", b_if, "up")

    def address(self, ns: Namespace, ifname: str, cidr: str) -> None:
        ns.ip("addr", "add", cidr, "dev", ifname)

    def track(self, proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
        self.processes.append(proc)
        return proc

    def cleanup(self) -> list[str]:
        """Kill what runs in our namespaces (by pid) and delete them; returns what it removed."""
        removed = []
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for ns in reversed(self.namespaces):
            for pid in ns.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            run("ip", "netns", "del", ns.name, check=False)
            removed.append(ns.name)
        self.namespaces.clear()
        (RECORDS / f"{self.prefix}.json").unlink(missing_ok=True)
        return removed

    def _record(self) -> None:
        RECORDS.mkdir(mode=0o700, exist_ok=True)
        record = {"pid": os.getpid(), "start": _start_time(os.getpid()),
                  "namespaces": [ns.name for ns in self.namespaces]}  # fmt: skip
        path = RECORDS / f"{self.prefix}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(path)


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat): a pid reused by another
    process has another one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


OWNER_FILE = ".virtnet-owner"


def mark_owner(directory: Path) -> None:
    """Write who made ``directory`` (pid and start time) into it, for :func:`reap_stale`."""
    pid = os.getpid()
    (directory / OWNER_FILE).write_text(json.dumps({"pid": pid, "start": _start_time(pid)}))


#: Where test run directories go: a host's /run is a tmpfs (systemd mounts one), and
#: virtnet's run dir with it; where /run is on a disk, /dev/shm stands in (see
#: :func:`run_base`).
RUN_BASES = (Path("/run"), Path("/dev/shm"))


def run_base() -> Path:
    """/run if it is a tmpfs, else /dev/shm (both reachable by dnsmasq's unprivileged user).

    A port's journal is a file made at plug and removed at unplug: on a tmpfs that is a few
    microseconds; on a disk it is not, and on ext4 without a journal (this project's test VM's
    root) each new file scans the inodes deleted in the last minutes (``recently_deleted``:
    19 % of a plug benchmark's CPU; a tap plug went from 1.3 to 2.9 ms over 1,000 ports).
    Tests and benchmarks run where a host keeps its run dir."""
    return RUN_BASES[0] if filesystem_type(RUN_BASES[0]) == "tmpfs" else RUN_BASES[1]


def _stale_run_dirs() -> list[Path]:
    """Test run directories (``virtnet-test-*`` in :data:`RUN_BASES`) whose maker is gone."""
    stale = []
    found = [d for base in RUN_BASES for d in base.glob("virtnet-test-*")]
    for directory in found:
        try:
            owner = json.loads((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # made before owners were written, or being made: left alone
        if _start_time(int(owner["pid"])) != owner.get("start"):
            stale.append(directory)
    return stale


def reap_stale() -> list[str]:
    """Remove what labs of killed processes left: their namespaces (and every process in
    them), their records, and the run directories their tests made. Labs of running
    processes are left alone."""
    removed: list[str] = []
    stale_dirs = _stale_run_dirs()
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("start") is not None and _start_time(int(record["pid"])) == record["start"]:
            continue  # its maker still runs
        left = [Namespace(n) for n in record["namespaces"] if os.path.exists(f"/run/netns/{n}")]
        removed += Lab(prefix=path.stem, namespaces=left).cleanup()
        path.unlink(missing_ok=True)
    if removed:  # their daemons are gone with them: private OVS directories they left
        from virtnet.testing import ovn, ovs

        ovs.reap_stale_dirs()
        ovn.reap_stale_dirs()
    for directory in stale_dirs:  # after the namespaces: no process of theirs writes there
        shutil.rmtree(directory, ignore_errors=True)
    return removed
