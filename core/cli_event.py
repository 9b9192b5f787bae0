"""``virtnet event``: the daemon's event stream (virsh's ``net-event``)."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

import click

from virtnet.cli_util import daemon_context
from virtnet.errors import Unsupported


def format_event(event: dict[str, Any]) -> str:
    """``2026-12-01 19:50:01.123+0000: port-plugged network=default port=<uuid> key=value``"""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["time"]))
    millis = int(event["time"] * 1000) % 1000
    parts = [f"{stamp}.{millis:03d}+0000: {event['kind']}", f"network={event['network']}"]
    if event.get("port"):
        parts.append(f"port={event['port']}")
    for key, value in sorted((event.get("detail") or {}).items()):
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={text}")
    return " ".join(parts)


@click.command("event")
@click.option("--loop", is_flag=True, help="Keep printing events (default: stop after one).")
@click.option("--timeout", type=float, help="Stop after SECONDS (virsh: 'event loop timed out').")
@click.option("--network", help="Only this network's events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def event(loop: bool, timeout: float | None, network: str | None, as_json: bool) -> None:
    """Print network, port and DHCP lease events as they happen (needs virtnetd)."""
    served = daemon_context()
    if served is None or served.subscribe is None:
        raise Unsupported(
            "events come from the daemon: start virtnetd for this host and run this again",
            subject="event",
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    with served.subscribe() as events:
        while True:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                click.echo("event loop timed out")
                return
            try:
                item = events.get(timeout=wait)
            except queue.Empty:
                if not served.alive():
                    return  # the client went away
                continue
            if network is not None and item["network"] != network:
                continue
            click.echo(json.dumps(item, sort_keys=True) if as_json else format_event(item))
            if not loop:
                return
