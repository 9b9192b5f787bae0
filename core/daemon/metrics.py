"""virtnetd's Prometheus metrics: ``--metrics ADDR`` (``metrics = ADDR`` in virtnetd.conf),
off by default. ``ADDR`` is ``HOST:PORT`` (TCP, in the namespace the daemon serves: its
``127.0.0.1`` is that host's) or ``unix:PATH``. ``GET /metrics`` answers in Prometheus' text
format (0.0.4); anything else is 404.

What is exported, read when scraped (under the API lock, so a scrape waits for at most one
operation): networks by state, ports and DHCP leases per network, packets each port's
anti-spoofing dropped in the last hour (Linux bridge guard), how long API operations took
(a histogram per operation, since the daemon started) and drift repairs per network.

Network and port names are in the labels: whoever can scrape learns them, so keep the
address on loopback or a unix socket of restricted mode (the socket is made 0600).
"""

from __future__ import annotations

import bisect
import http.server
import logging
import os
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from virtnet.errors import InvalidInput, OperationFailed

log = logging.getLogger("virtnetd")

#: Operations timed (the API's methods that change something), and the histogram's buckets.
OPERATIONS = frozenset(
    {
        "define_network",
        "create_network",
        "start_network",
        "destroy_network",
        "update_network",
        "create_port",
        "delete_port",
        "repair_network",
    }
)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def parse_address(text: str) -> tuple[int, Any]:
    """``HOST:PORT`` or ``unix:PATH`` -> (address family, address)."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise InvalidInput(
                f"{text!r}: a unix socket needs an absolute path", subject="--metrics"
            )
        return socket.AF_UNIX, path
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"{text!r} is not HOST:PORT or unix:PATH", subject="--metrics")
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


class Metrics:
    """Counts kept while the daemon runs; :meth:`exposition` adds what the API knows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self.repairs: Counter[str] = Counter()

    def observe(self, operation: str, seconds: float) -> None:
        with self._lock:
            counts = self._buckets.setdefault(operation, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[operation] = self._sums.get(operation, 0.0) + seconds

    def repaired(self, network: str) -> None:
        with self._lock:
            self.repairs[network] += 1

    def timed(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        """``call`` timed into the histogram when ``name`` is an operation."""
        if name not in OPERATIONS:
            return call

        def timing(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.observe(name, time.perf_counter() - start)

        return timing

    def exposition(self, api: Any) -> str:
        """The text format; ``api`` is read here (the caller holds its lock)."""
        out: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            out.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

        family("virtnet_up", "gauge", "1 while virtnetd answers")
        out.append("virtnet_up 1")
        networks = api.list_networks()
        family("virtnet_networks", "gauge", "Networks by state")
        for state in ("active", "inactive"):
            count = sum(1 for n in networks if n.active == (state == "active"))
            out.append(f'virtnet_networks{{state="{state}"}} {count}')
        ports, leases, drops = [], [], []
        dropped = api.dropped_packets()  # every port's, in one read
        for net in (n for n in networks if n.active):
            label = f'network="{_escape(net.name)}"'
            plugged = api.list_ports(net.name)
            ports.append(f"virtnet_ports{{{label}}} {len(plugged)}")
            leases.append(f"virtnet_dhcp_leases{{{label}}} {len(api.dhcp_leases(net.name))}")
            for uuid in sorted(p.uuid for p in plugged if p.uuid in dropped):
                drops.append(
                    f'virtnet_port_dropped_packets{{{label},port="{uuid}"}} {dropped[uuid]}'
                )
        family("virtnet_ports", "gauge", "Ports plugged into each active network")
        out += ports
        family("virtnet_dhcp_leases", "gauge", "DHCP leases held on each active network")
        out += leases
        family(
            "virtnet_port_dropped_packets",
            "gauge",
            "Packets a port's anti-spoofing dropped in the last hour (Linux bridge guard)",
        )
        out += drops
        with self._lock:
            family("virtnet_operation_seconds", "histogram", "How long API operations took")
            for operation, counts in sorted(self._buckets.items()):
                running = 0
                for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    out.append(
                        f'virtnet_operation_seconds_bucket{{operation="{operation}",le="{le}"}} '
                        f"{running}"
                    )
                out.append(f'virtnet_operation_seconds_sum{{operation="{operation}"}} '
                           f"{self._sums[operation]:.6f}")  # fmt: skip
                out.append(f'virtnet_operation_seconds_count{{operation="{operation}"}} {running}')
            family("virtnet_repairs_total", "counter", "Drift repairs the daemon made")
            out += [f'virtnet_repairs_total{{network="{_escape(n)}"}} {c}'
                    for n, c in sorted(self.repairs.items())]  # fmt: skip
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(address: str, render: Callable[[], str]) -> socketserver.BaseServer:
    """Start answering ``GET /metrics`` at ``address`` on a thread of its own."""
    family, where = parse_address(address)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "metrics client"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    server: socketserver.BaseServer
    try:
        if family == socket.AF_UNIX:
            if os.path.exists(where):
                os.unlink(where)
            old = os.umask(0o177)  # 0600: the labels name networks and ports
            try:
                server = _UnixHTTPServer(where, Handler)
            finally:
                os.umask(old)
        else:
            kind = type("Server", (_TCPHTTPServer,), {"address_family": family})
            server = kind(where, Handler)
    except OSError as exc:
        raise OperationFailed(f"cannot serve metrics on {address}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="virtnetd-metrics", daemon=True).start()
    log.info("metrics on %s", address)
    return server
