"""A namespace's state as plain data, to prove an operation left it exactly as it was."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from virtnet.services.netlink import RETIRED_PREFIX
from virtnet.testing.netns import Namespace


def snapshot(ns: Namespace, run_dir: Path | None = None) -> dict[str, Any]:
    """Links (master, MTU, alias), addresses, routes, the nftables ruleset, processes and
    run-dir files of ``ns``."""

    def ip_json(*args: str) -> Any:
        return json.loads(ns.ip("-j", *args).stdout or "[]")

    links = sorted(  # with what a careless step could change on a link that stays
        (link["ifname"], link.get("master", ""), link.get("mtu"), link.get("ifalias", ""))
        for link in _reaped(ns, ip_json)
    )
    addresses = sorted(
        (a["ifname"], f"{i['local']}/{i['prefixlen']}")
        for a in ip_json("addr", "show")
        for i in a.get("addr_info", [])
        if not _kernel_derived(i["local"])
    )
    routes = sorted(
        json.dumps({k: v for k, v in r.items() if k != "flags"}, sort_keys=True)  # linkdown etc.
        for r in ip_json("route", "show", "table", "all")
        if not _kernel_derived(r.get("dst", ""))
    )
    ruleset = ns.exec("nft", "list", "ruleset", check=False).stdout
    files: list[str] = []
    if run_dir is not None and run_dir.exists():
        files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
        # virtnet's own bookkeeping, there from its first operation on (the API opens its
        # store then): the state database and the host lock
        files = [f for f in files if not f.startswith("runtime.db") and f != "lock"]
    return {
        "links": links,
        "addresses": addresses,
        "routes": routes,
        "nftables": ruleset,
        "processes": sorted(ns.pids()),
        "files": files,
    }


def _reaped(ns: Namespace, ip_json: Any, timeout: float = 10.0) -> Any:
    """The namespace's links once the links an operation retired are deleted: an unplug or
    a stop returns when they are out of service, renamed ``vnr<ifindex>`` (a stopped
    bridge's ports keep their names under it), and deletes them in the background
    (:mod:`virtnet.services.reaper`). Any still there after ``timeout`` are in the result:
    a leak the comparison shows."""
    deadline = time.monotonic() + timeout
    while True:
        links = ip_json("link", "show")
        if time.monotonic() > deadline or not any(
            name.startswith(RETIRED_PREFIX)
            for link in links
            for name in (link["ifname"], link.get("master", ""))
        ):
            return links
        time.sleep(0.02)


def link_details(ns: Namespace, name: str) -> Any:
    """Everything ``ip -d`` says of one link but its running timers (a bridge's gc and hello
    timers tick): to prove a link someone else owns was left bit for bit as it was."""

    def steady(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: steady(v) for k, v in value.items() if not k.endswith("_timer")}
        return [steady(v) for v in value] if isinstance(value, list) else value

    return steady(json.loads(ns.ip("-d", "-j", "link", "show", "dev", name).stdout))


def _kernel_derived(address: str) -> bool:
    """IPv6 link-local addresses and multicast routes: the kernel adds them by itself when a
    link first gets carrier (a bridge, once a port is up), so they say nothing about what
    virtnet made or left behind."""
    return address.startswith(("fe80:", "ff00:"))


def pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")
