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

from virtnet.errors import InvalidInput, VirtnetError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from virtnet.api import Virtnet
    from virtnet.events import Watcher

log = logging.getLogger("virtnetd")


DEFAULT_CONFIG = Path("/etc/virtnet/virtnetd.conf")
#: ``[driver.ovn]`` holds the ovn backend's settings: each ``key = value`` reaches the
#: backend as the environment variable ``VIRTNET_OVN_KEY`` (see :func:`driver_environment`).
DRIVER_SECTION = "driver."
#: Settings a config file may hold ([virtnetd] section), with how to read them.
CONFIG_KEYS = {
    "group": str,
    "interval": float,
    "full_interval": float,
    "repair": bool,
    "autostart": bool,
    "dnsmasq_options": bool,  # allow libvirt's raw <dnsmasq:options> (docs/security.md)
    "dnsmasq_shared": int,  # networks one dnsmasq may serve (services/dnsmasq_group.py)
    "metrics": str,  # Prometheus metrics at HOST:PORT or unix:PATH (daemon/metrics.py)
    "plug_acl": str,  # who may plug VMs without root (plug_acl.py); the plug socket's switch
    "plug_socket": str,  # where the bridge helper connects [RUN_DIR/virtnetd-plug.sock]
}


def read_config(path: Path) -> dict[str, object]:
    """``[virtnetd]`` settings from an INI file; errors name the file, the key and why."""
    import configparser

    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", subject="--config") from None
    settings: dict[str, object] = {}
    for section in parser.sections():
        if section.startswith(DRIVER_SECTION):
            driver = section[len(DRIVER_SECTION) :]
            for key, raw in parser.items(section):
                settings.setdefault("driver_options", {})[f"{driver}.{key}"] = raw  # type: ignore[index]
        elif section != "virtnetd":
            raise InvalidInput(
                f"unknown section [{section}] (known: [virtnetd], [{DRIVER_SECTION}NAME])",
                subject=str(path),
            )
    if not parser.has_section("virtnetd"):
        return settings
    for key, raw in parser.items("virtnetd"):
        kind = CONFIG_KEYS.get(key)
        if kind is None:
            raise InvalidInput(
                f"unknown setting (known: {', '.join(sorted(CONFIG_KEYS))})",
                subject=f"{path}: {key}",
            )
        try:
            if kind is bool:
                settings[key] = parser.getboolean("virtnetd", key)
            elif kind is float:
                settings[key] = float(raw)
                if float(raw) <= 0:
                    raise ValueError("must be positive")
            elif kind is int:  # dnsmasq_shared, a number of networks
                from virtnet.host import MAX_DNSMASQ_SHARED

                settings[key] = int(raw)
                if not 0 <= int(raw) <= MAX_DNSMASQ_SHARED:
                    raise ValueError(f"expected 0 to {MAX_DNSMASQ_SHARED}")
            else:
                settings[key] = raw
        except ValueError as exc:
            raise InvalidInput(f"{raw!r}: {exc}", subject=f"{path}: {key}") from None
    return settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="virtnetd", description="Serve virtnet's API for one host network namespace."
    )
    p.add_argument(
        "--config",
        help="settings file: a [virtnetd] section with group, interval, full_interval, repair, "
        "autostart "
        f"[{DEFAULT_CONFIG}, if it exists]; options given here win",
    )
    p.add_argument("--netns", help="serve this network namespace (it must exist)")
    p.add_argument("--state-dir", help="persistent definitions [/var/lib/virtnet]")
    p.add_argument("--run-dir", help="runtime state and the socket [/run/virtnet]")
    p.add_argument("--socket", help="socket path [RUN_DIR/virtnetd.sock]")
    p.add_argument("--group", help="also let this group use the socket (mode 0660)")
    p.add_argument(
        "--interval",
        type=float,
        help="seconds between drift checks of networks no event covers (Open vSwitch) [1]",
    )
    p.add_argument(
        "--full-interval",
        type=float,
        help="seconds for a round through every network, events or not [300]",
    )
    p.add_argument(
        "--no-repair",
        dest="repair",
        action="store_false",
        default=None,
        help="report drift, do not repair it",
    )
    p.add_argument(
        "--no-autostart",
        dest="autostart",
        action="store_false",
        default=None,
        help="do not start autostart networks",
    )
    p.add_argument(
        "--metrics",
        metavar="ADDR",
        help="serve Prometheus metrics at HOST:PORT (in the served namespace) or unix:PATH [off]",
    )
    p.add_argument(
        "--plug-acl",
        metavar="FILE",
        help="serve the plug socket for unprivileged VMs (virtnet-bridge-helper), with this "
        "ACL of who may use which network [/etc/virtnet/bridge.conf, if it exists]",
    )
    p.add_argument(
        "--plug-socket", metavar="PATH", help="the plug socket [RUN_DIR/virtnetd-plug.sock]"
    )
    p.add_argument(
        "--driver-option",
        metavar="DRIVER.KEY=VALUE",
        action="append",
        default=[],
        help="a backend's setting, as in the settings file's [driver.DRIVER] section (e.g. "
        "ovn.nb=tcp:192.0.2.10:6641); reaches it as VIRTNET_DRIVER_KEY; repeatable",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def driver_environment(options: dict[str, str]) -> dict[str, str]:
    """Backend settings as the environment the backends read: ``ovn.nb`` -> ``VIRTNET_OVN_NB``.
    Backends read their settings from the environment so the CLI (no daemon), virtnetd and
    an embedder configure them one way."""
    env = {}
    for name, value in options.items():
        driver, dot, key = name.partition(".")
        if (
            not dot
            or not driver.replace("_", "").isalnum()
            or not key.replace("_", "").replace("-", "").isalnum()
        ):
            raise InvalidInput(f"{name!r}: expected DRIVER.KEY", subject="--driver-option")
        env[f"VIRTNET_{driver.upper()}_{key.upper().replace('-', '_')}"] = value
    return env


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


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Command-line options win over the config file, which wins over the defaults."""
    config = Path(args.config) if args.config else DEFAULT_CONFIG
    settings = read_config(config) if args.config or config.exists() else {}
    defaults = {
        "group": None,
        "interval": 1.0,
        "full_interval": 300.0,
        "repair": True,
        "autostart": True,
        "metrics": None,
        "plug_acl": None,
        "plug_socket": None,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, settings.get(key, value))
    from_file = driver_environment(dict(settings.get("driver_options") or {}))  # type: ignore[call-overload]
    given: dict[str, str] = {}
    for option in args.driver_option:
        name, eq, text = option.partition("=")
        if not eq:
            raise InvalidInput(f"{option!r}: expected DRIVER.KEY=VALUE", subject="--driver-option")
        given[name.strip()] = text.strip()
    for variable, text in from_file.items():  # the environment wins over the file
        os.environ.setdefault(variable, text)
    os.environ.update(driver_environment(given))  # and the command line over both
    if settings.get("dnsmasq_options"):
        os.environ["VIRTNET_DNSMASQ_OPTIONS"] = "allow"  # read where the host is made
    if "dnsmasq_shared" in settings:
        os.environ.setdefault("VIRTNET_DNSMASQ_SHARED", str(settings["dnsmasq_shared"]))
    if args.metrics:
        from virtnet.daemon.metrics import parse_address

        parse_address(args.metrics)  # a bad address is bad input, before anything starts
    from virtnet.plug_acl import DEFAULT_ACL

    if args.plug_acl is None and DEFAULT_ACL.exists():
        args.plug_acl = str(DEFAULT_ACL)
    if args.plug_acl is not None and not Path(args.plug_acl).is_file():
        raise InvalidInput(f"{args.plug_acl}: no such file", subject="--plug-acl")
    if args.interval <= 0:
        raise InvalidInput(f"{args.interval}: must be positive", subject="--interval")
    if args.full_interval <= 0:
        raise InvalidInput(f"{args.full_interval}: must be positive", subject="--full-interval")
    return args


def run(args: argparse.Namespace) -> int:
    from virtnet.host import enter_netns, filesystem_type
    from virtnet.paths import resolve_dirs, socket_path

    if args.netns:
        enter_netns(args.netns)  # the whole process, before any thread exists
    state_dir, run_dir = resolve_dirs(args.state_dir, args.run_dir, args.netns)
    lock_fd = _lock(run_dir)

    from virtnet.api import Virtnet
    from virtnet.daemon import stdio
    from virtnet.daemon.events import EventHub
    from virtnet.daemon.methods import Methods, Serialized
    from virtnet.daemon.metrics import Metrics
    from virtnet.daemon.metrics import serve as serve_metrics
    from virtnet.daemon.monitor import Monitor
    from virtnet.daemon.server import Server

    # undoes what a killed daemon left half-done; keeps the firewall's tables between networks
    api = Virtnet(state_dir, run_dir, args.netns, keep_tables=True)
    lock = threading.RLock()
    hub = EventHub()
    api.subscribe(hub.publish)
    host = {"netns": args.netns, "state_dir": str(state_dir), "run_dir": str(run_dir)}
    metrics = Metrics()
    methods = Methods(Serialized(api, lock, metrics), hub, host)
    path = Path(args.socket) if args.socket else socket_path(run_dir)
    server = Server(path, methods, hub, args.group)
    monitor = Monitor(api, lock, args.interval, args.repair, args.full_interval)
    monitor.metrics = metrics
    stdio.install()
    orphans, _problems = api.collect_garbage()  # what no record owns (virtnet gc)
    for orphan in orphans:
        log.info("gc: removed %s", orphan.line())
    monitor.reconcile_all()
    api.release_closed_ports()  # VMs that exited while no daemon watched their taps
    if args.autostart:
        monitor.autostart()
    # links retired by the recovery and the collection above are deleted in the background:
    # the socket answers once they are gone, so the first client sees the kernel as recorded
    api.settle()
    server.bind()
    plugs = None
    if args.plug_acl:
        from virtnet.daemon.plug import PlugServer

        plug_path = Path(args.plug_socket) if args.plug_socket else run_dir / "virtnetd-plug.sock"
        plugs = PlugServer(plug_path, Path(args.plug_acl), Serialized(api, lock, metrics))
        plugs.bind()
        threading.Thread(target=plugs.serve, name="virtnetd-plug", daemon=True).start()
        log.info("plug socket %s (ACL %s)", plug_path, args.plug_acl)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def rescan() -> None:
        log.info("SIGHUP: rescanning plugins")
        with lock:
            api.rescan_plugins()
        log.info("plugins rescanned: backends %s", ", ".join(b.name for b in api.backends()))

    # SIGHUP: load backends installed since the start (``virtnet drivers`` does it too)
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=rescan, daemon=True).start())
    threading.Thread(target=server.serve, name="virtnetd-accept", daemon=True).start()
    scraper = None
    if args.metrics:

        def render() -> str:
            with lock:
                return metrics.exposition(api)

        scraper = serve_metrics(args.metrics, render)
    monitor.start()
    watching = _start_watchers(api, stop)
    log.info("serving %s on %s (pid %d)", args.netns or "the current namespace", path, os.getpid())
    if (kind := filesystem_type(run_dir)) != "tmpfs":  # each plug makes and removes a file
        log.warning("run dir %s is on %s, not a tmpfs: plugs and unplugs are slower", run_dir, kind)
    _notify_systemd()
    # Python runs signal handlers in the main thread only, between bytecodes; a main thread
    # blocked in one untimed wait did not always run them (under load, 1 SIGHUP in 5 went
    # unanswered for 10 s). Waking twice a second bounds a handler's delay to 0.5 s.
    while not stop.wait(0.5):
        if monitor.host_gone.is_set():
            break
    gone = monitor.host_gone.is_set()
    log.info("stopping (%s)", "stopping the networks of the deleted namespace" if gone
             else "networks keep running")  # fmt: skip
    server.close()
    if plugs is not None:
        plugs.close()
    if scraper is not None:
        scraper.shutdown()
        scraper.server_close()
        if args.metrics.startswith("unix:"):
            Path(args.metrics[5:]).unlink(missing_ok=True)
    monitor.stop()
    for thread in watching:
        thread.join(timeout=5)
    with lock:
        if gone:  # its links went with it; its dnsmasqs would keep it alive, unseen
            _stop_every_network(api)
        elif not api.store.active_xml():
            try:
                api.drop_unused_tables()  # kept between networks while the daemon ran
            except Exception as exc:  # the next start, or virtnet gc, finds them
                log.warning("cannot remove virtnet's nftables tables: %s", exc)
        api.close()
    # the pid file goes while its lock is still held: a daemon starting now either fails on
    # the lock or makes a new file
    (run_dir / "virtnetd.pid").unlink(missing_ok=True)
    os.close(lock_fd)
    return 0


def _start_watchers(api: Virtnet, stop: threading.Event) -> list[threading.Thread]:
    """Run each plugin's watchers (``virtnet_watchers``) on a thread of its own; a watcher
    that crashes is logged, and the daemon goes on without it."""
    threads = []
    for plugin, watcher in api.hooks.watchers():

        def run(watcher: Watcher = watcher, plugin: str = plugin) -> None:
            try:
                watcher(api.hooks.emit, stop)
            except Exception:
                log.exception("watcher of plugin %s stopped", plugin)

        thread = threading.Thread(target=run, name=f"virtnetd-watch-{plugin}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _stop_every_network(api: Virtnet) -> None:
    for name in api.store.active_xml():
        try:
            api.destroy_network(name)
            log.info("network %s stopped", name)
        except VirtnetError as exc:
            log.warning("network %s: %s", name, exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s virtnetd: %(levelname)s: %(message)s",
    )
    try:
        return run(settle(args))
    except VirtnetError as exc:
        print(f"virtnetd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
