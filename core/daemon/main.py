"""``virtnetd``: serve one host's virtnet API on a unix socket until SIGTERM.

Stopping the daemon leaves networks running (as libvirt's does); a new daemon adopts them.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from virtnet.errors import VirtnetError

log = logging.getLogger("virtnetd")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="virtnetd", description="Serve virtnet's API for one host network namespace."
    )
    p.add_argument("--netns", help="serve this network namespace (it must exist)")
    p.add_argument("--state-dir", help="persistent definitions [/var/lib/virtnet]")
    p.add_argument("--run-dir", help="runtime state and the socket [/run/virtnet]")
    p.add_argument("--socket", help="socket path [RUN_DIR/virtnetd.sock]")
    p.add_argument("--group", help="also let this group use the socket (mode 0660)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between drift checks [1]")
    p.add_argument("--no-repair", action="store_true", help="report drift, do not repair it")
    p.add_argument("--no-autostart", action="store_true", help="do not start autostart networks")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _lock(run_dir: Path) -> int:
    """One daemon per host: an exclusive lock held for the daemon's life."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / "virtnetd.pid", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode().strip() or "?"
        os.close(fd)
        raise VirtnetError(f"virtnetd is already running for {run_dir} (pid {other})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _notify_systemd() -> None:
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + target[1:] if target.startswith("@") else target)
        s.send(b"READY=1")


def run(args: argparse.Namespace) -> int:
    from virtnet.host import enter_netns
    from virtnet.paths import resolve_dirs, socket_path

    if args.netns:
        enter_netns(args.netns)  # the whole process, before any thread exists
    state_dir, run_dir = resolve_dirs(args.state_dir, args.run_dir, args.netns)
    lock_fd = _lock(run_dir)

    from virtnet.api import Virtnet
    from virtnet.daemon import stdio
    from virtnet.daemon.events import EventHub
    from virtnet.daemon.methods import Methods, Serialized
    from virtnet.daemon.monitor import Monitor
    from virtnet.daemon.server import Server

    api = Virtnet(state_dir, run_dir, args.netns)  # undoes what a killed daemon left half-done
    lock = threading.RLock()
    hub = EventHub()
    api.subscribe(hub.publish)
    host = {"netns": args.netns, "state_dir": str(state_dir), "run_dir": str(run_dir)}
    methods = Methods(Serialized(api, lock), hub, host)
    path = Path(args.socket) if args.socket else socket_path(run_dir)
    server = Server(path, methods, hub, args.group)
    monitor = Monitor(api, lock, args.interval, repair=not args.no_repair)
    stdio.install()
    monitor.reconcile_all()
    if not args.no_autostart:
        monitor.autostart()
    server.bind()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=server.serve, name="virtnetd-accept", daemon=True).start()
    monitor.start()
    log.info("serving %s on %s (pid %d)", args.netns or "the current namespace", path, os.getpid())
    _notify_systemd()
    stop.wait()
    log.info("stopping (networks keep running)")
    server.close()
    monitor.stop()
    with lock:
        api.close()
    os.close(lock_fd)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s virtnetd: %(levelname)s: %(message)s",
    )
    try:
        return run(args)
    except VirtnetError as exc:
        print(f"virtnetd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
