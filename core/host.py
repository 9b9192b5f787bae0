"""Where virtnet acts: picking the directories, entering a network namespace, locking.

``--netns NAME`` makes a whole process act inside that namespace (how tests and labs make a
throw-away "host"); each namespace then gets its own state and run directories, so two
"hosts" on one machine never see each other's networks.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from virtnet.errors import InvalidInput, NotFound, OperationFailed
from virtnet.paths import resolve_dirs

if TYPE_CHECKING:  # the model behind it costs ~30 ms: not for who only enters a namespace
    from virtnet.backend import Host

NETNS_DIR = Path("/run/netns")


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is on (the longest mount point above it)."""
    best, kind = "", ""
    target = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


_CLONE_NEWNET = 0x40000000


def make_host(
    state_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    netns: str | None = None,
) -> Host:
    """Resolve directories: argument, then ``VIRTNET_STATE_DIR``/``VIRTNET_RUN_DIR``, then
    the defaults (with a per-namespace sub-directory when ``netns`` is given)."""
    state, run = resolve_dirs(state_dir, run_dir, netns)
    allow = os.environ.get("VIRTNET_DNSMASQ_OPTIONS", "") == "allow"
    shared = dnsmasq_shared(os.environ.get("VIRTNET_DNSMASQ_SHARED", "0"))
    from virtnet.backend import Host

    return Host(
        state_dir=state,
        run_dir=run,
        netns=netns,
        allow_dnsmasq_options=allow,
        dnsmasq_shared=shared,
    )


#: The most networks one shared dnsmasq serves: its restart (every join and leave) grows
#: with them (~15 ms at 32, ~160 ms at 1,000) and so does what one crash takes down.
MAX_DNSMASQ_SHARED = 256


def dnsmasq_shared(text: str) -> int:
    """``VIRTNET_DNSMASQ_SHARED``: how many networks may share a dnsmasq (0: none)."""
    try:
        value = int(text or "0")
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_DNSMASQ_SHARED:
        raise InvalidInput(
            f"{text!r}: expected a number of networks from 0 to {MAX_DNSMASQ_SHARED}",
            subject="VIRTNET_DNSMASQ_SHARED",
        )
    return value


def prepare_dirs(host: Host) -> None:
    """Create the state directory (private to root) and the run directory."""
    host.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # searchable (not listable) by others: dnsmasq, after dropping to its own user, re-reads
    # its hosts files under run_dir/dnsmasq on SIGHUP; everything else in it stays 0600/0700
    host.run_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    host.run_dir.chmod(0o711)
    (host.run_dir / "journal").mkdir(exist_ok=True, mode=0o700)


def netns_path(name: str) -> Path:
    if not name or "/" in name or name in (".", "..") or not name.isprintable():
        raise InvalidInput(f"{name!r} is not a network namespace name", subject="--netns")
    return NETNS_DIR / name


def open_netns(name: str, subject: str = "--netns") -> int:
    """An fd of namespace ``name``, checked to be one: a name whose bind mount was made in
    another mount namespace (``ip netns add`` under ``ip netns exec``, a runtime's private
    mounts) is an empty file here, and the kernel would refuse its fd with a bare EINVAL."""
    try:
        fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {name!r} does not exist", subject=subject) from None
    if os.fstat(fd).st_dev != os.stat("/proc/self/ns/net").st_dev:  # not on nsfs
        os.close(fd)
        raise InvalidInput(
            f"{NETNS_DIR / name} is not a network namespace here (no namespace is mounted on "
            "it in this mount namespace: was it made inside another one?)",
            subject=subject,
        )
    return fd


def require_netns(name: str, subject: str) -> None:
    os.close(open_netns(name, subject))


def enter_netns(name: str) -> None:
    """Move the calling thread (the whole process, if single-threaded) into namespace ``name``.

    The namespace must exist; virtnet never creates one implicitly (pyroute2's
    ``IPRoute(netns=...)`` would).
    """
    try:
        fd = open_netns(name)
    except NotFound:  # a command-line argument: bad input, exit 2
        missing = f"network namespace {name!r} does not exist"
        raise InvalidInput(missing, subject="--netns") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OperationFailed(f"cannot enter network namespace {name!r}: {os.strerror(err)}")
    finally:
        os.close(fd)


@contextmanager
def host_lock(host: Host) -> Iterator[None]:
    """Serialise every change on one host: one writer at a time, across processes.

    Operations take milliseconds, so one lock keeps reasoning simple (a define sees every
    other definition; a start sees the final state of the one before it).
    """
    held = _held.__dict__.setdefault("run_dirs", set())
    if host.run_dir in held:  # this thread holds it already (a store opened on first use)
        yield
        return
    prepare_dirs(host)
    fd = os.open(host.run_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
            except OSError as exc:  # pragma: no cover - EINTR on signals
                if exc.errno != errno.EINTR:
                    raise
        held.add(host.run_dir)
        try:
            yield
        finally:
            held.discard(host.run_dir)
    finally:
        os.close(fd)


_held = threading.local()  # the run dirs whose lock this thread holds
