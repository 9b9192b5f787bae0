"""The host's virtual networks as a diagram (``virtnet graph``), like the figure of libvirt's
"Network management architecture" page: each network's uplink, its bridge or switch (by
backend), forward mode and subnets, and every port with its guest, MAC, lease and guards.

The model is turned into Graphviz's DOT language here; Graphviz's ``dot`` lays it out and
draws SVG or PNG (nothing is placed by hand). Pure but for the API reads: unit-tested on its
DOT text, and drawn for real in the integration tests.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from virtnet.errors import NotFound, OperationFailed, Unsupported
from virtnet.model.network import Network
from virtnet.model.port import AttachmentKind, NetworkPort

TYPE_CHECKING = False
if TYPE_CHECKING:
    from virtnet.api import Virtnet

FORMATS = ("dot", "svg", "png")
_MODE_COLOURS = {"nat": "#dbeafe", "route": "#dcfce7", "open": "#fef9c3", "isolated": "#f3f4f6"}


@dataclass
class NetworkView:
    """What the diagram shows of one network, read from the API."""

    network: Network
    active: bool
    backend: str | None = None
    ports: list[NetworkPort] = field(default_factory=list)
    leases: dict[str, list[str]] = field(default_factory=dict)  # MAC -> leased addresses


def gather(api: Virtnet, names: Iterable[str] = ()) -> list[NetworkView]:
    """The views of ``names`` (every network when empty), active ones with ports and leases."""
    wanted = set(names)
    views = []
    for summary in api.list_networks():
        if wanted and summary.name not in wanted:
            continue
        view = NetworkView(api.get_network(summary.name), summary.active, summary.backend)
        if summary.active:
            view.ports = api.list_ports(summary.name)
            for lease in api.dhcp_leases(summary.name):
                if lease.mac:
                    view.leases.setdefault(lease.mac, []).append(lease.ip)
        views.append(view)
    missing = wanted - {v.network.name for v in views}
    if missing:
        raise NotFound(f"network {sorted(missing)[0]!r} does not exist")
    return views


def quote(text: str) -> str:
    """A DOT string: every name and label goes through here."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(views: list[NetworkView]) -> str:
    lines = [
        "digraph virtnet {",
        "  rankdir=TB; compound=true; fontname=Helvetica;",
        "  node [fontname=Helvetica, fontsize=10, shape=box, style=rounded];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    uplinks: set[str] = set()
    for index, view in enumerate(views):
        lines += _cluster(index, view, uplinks)
    for dev in sorted(uplinks):
        lines.append(f"  {quote('dev:' + dev)} [label={quote(dev)}, shape=cds, style=filled, "
                     'fillcolor="#e5e7eb"];')  # fmt: skip
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cluster(index: int, view: NetworkView, uplinks: set[str]) -> list[str]:
    net = view.network
    mode = net.mode.value
    switch = quote(f"net:{net.name}")
    subnets = ", ".join(f"{ip.address}/{ip.prefixlen}" for ip in net.ips)
    title = f"{net.name} ({mode}{', ' + subnets if subnets else ''})"
    state = (view.backend or "-") if view.active else "inactive"
    fill = quote(_MODE_COLOURS.get(mode, "#ffffff"))
    out = [
        f"  subgraph cluster_{index} {{",
        f"    label={quote(title)}; style=filled; fillcolor={fill};",
    ]
    bridge = net.bridge.name if net.bridge and net.bridge.name else None
    if bridge:  # the backend's name follows on the next line (the core names none itself)
        label = f"bridge {bridge}"
    elif net.mode.has_own_bridge:
        label = "bridge (named at start)"
    else:  # direct modes: the guests' links hang off host devices
        label = f"{mode} on " + (", ".join(net.forward_devices) or "a device pool")
    out.append(f"    {switch} [label={quote(label + chr(10) + state)}, shape=box3d];")
    for port in view.ports:
        out += _port(switch, port, view.leases.get(port.mac or "", []))
    out.append("  }")
    for dev in net.forward_devices:
        uplinks.add(dev)
        out.append(f"  {switch} -> {quote('dev:' + dev)} [label={quote(mode)}, dir=both];")
    return out


def _port(switch: str, port: NetworkPort, leases: list[str]) -> list[str]:
    a = port.attachment
    node = quote(f"port:{port.uuid}")
    guest = {
        AttachmentKind.VETH: f"container {a.netns}:{a.guest_ifname or 'eth0'}",
        AttachmentKind.MACVLAN: f"container {a.netns}:{a.guest_ifname or 'eth0'}",
        AttachmentKind.TAP: "VM (tap)",
        AttachmentKind.MACVTAP: "VM (macvtap)",
    }.get(a.kind, "guest")
    rows = [guest, f"{a.kind.value} {a.ifname or ''}".strip(), port.mac or "no MAC"]
    rows.append("lease " + ", ".join(leases) if leases else "no lease")
    guards = ["anti-spoofing" if a.spoof_check is not False else "NO anti-spoofing"]
    if port.isolated:
        guards.append("isolated")
    rows.append(", ".join(guards))
    colour = "#ffffff" if a.spoof_check is not False else "#fee2e2"
    return [
        f"    {node} [label={quote(chr(10).join(rows))}, style=filled, fillcolor={quote(colour)}];",
        f"    {switch} -> {node} [arrowhead=none];",
    ]


def render(dot: str, fmt: str) -> bytes:
    """DOT text, or Graphviz's drawing of it."""
    if fmt == "dot":
        return dot.encode()
    binary = shutil.which("dot")
    if binary is None:
        raise Unsupported(
            f"{fmt} needs Graphviz's dot (Debian: graphviz); dot prints the diagram's source",
            subject="--format",
        )
    done = subprocess.run([binary, f"-T{fmt}"], input=dot.encode(), capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    if done.returncode != 0:
        raise OperationFailed(f"graphviz failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
