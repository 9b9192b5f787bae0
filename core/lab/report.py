"""``virtnet lab run|check FILE --report out.html``: the lab on one self-contained page.

The topology is drawn from the lab file as the seed page draws it (LANs and their machines,
the host's NICs, the virtual networks with mode and subnet, the guests and their ports),
laid out by Graphviz (:func:`virtnet.graph.render`) and inlined as SVG; the connectivity
matrix is a table, each row coloured by its verdict (expected against seen, NAT source, DNS
answers); the timings of up, check and down. No script, no external file: it opens anywhere,
and the suite renders it in headless Chromium.
"""

from __future__ import annotations

import html
import time

from virtnet.errors import VirtnetError
from virtnet.graph import quote, render
from virtnet.lab.check import Outcome, table_rows
from virtnet.lab.spec import LabSpec
from virtnet.model import parse_network

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em; color: #111827; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d1d5db; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f4f6; }
tr.ok td { background: #dcfce7; } tr.bad td { background: #fee2e2; font-weight: bold; }
.summary { font-size: 1.1em; } .topology svg { max-width: 100%; height: auto; }
"""


def topology_dot(spec: LabSpec, backend: str | None) -> str:
    """The lab file as a diagram: who is cabled to what (its plan, not the kernel's state)."""
    lines = ["graph lab {", "  rankdir=LR; fontname=Helvetica;",
             "  node [fontname=Helvetica, fontsize=10, shape=box, style=rounded];",
             '  host [label="host", shape=box3d, style=filled, fillcolor="#e5e7eb"];']  # fmt: skip
    for lan in spec.lans:
        lines.append(f"  {quote('lan:' + lan.name)} [label={quote(lan.name)}, shape=ellipse];")
        for peer in lan.peers:
            label = f"{peer.name}\n{peer.address}"
            lines.append(f"  {quote('peer:' + peer.name)} [label={quote(label)}];")
            lines.append(f"  {quote('peer:' + peer.name)} -- {quote('lan:' + lan.name)};")
    for nic in spec.nics:
        label = nic.name + (f"\n{nic.address}" if nic.address else "")
        lines.append(f"  host -- {quote('lan:' + nic.lan)} [label={quote(label)}, fontsize=9];")
    for network in spec.networks:
        xml = network.variants.get(backend or "", network.variants.get("default", ""))
        try:
            net = parse_network(xml)
        except VirtnetError:
            continue
        subnets = ", ".join(f"{ip.address}/{ip.prefixlen}" for ip in net.ips)
        label = f"{net.name}\n{net.mode.value}" + (f"\n{subnets}" if subnets else "")
        node = quote("net:" + network.name)
        lines.append(f'  {node} [label={quote(label)}, style=filled, fillcolor="#dbeafe"];')
        lines.append(f"  host -- {node};")
    for guest in spec.guests:
        gnode = quote("guest:" + guest.name)
        lines.append(f'  {gnode} [label={quote(guest.name)}, style=filled, fillcolor="#fef9c3"];')
        for port in guest.ports:
            label = f"{port.ifname} {port.address}"
            lines.append(f"  {gnode} -- {quote('net:' + port.network)} [label={quote(label)}, "
                         "fontsize=9];")  # fmt: skip
    lines.append("}")
    return "\n".join(lines) + "\n"


def report_html(
    spec: LabSpec,
    outcomes: list[Outcome],
    backend: str | None = None,
    timings: dict[str, float] | None = None,
) -> str:
    """The page: topology, matrix, timings."""
    esc = html.escape
    ok = sum(o.ok for o in outcomes)
    try:
        drawing = render(topology_dot(spec, backend), "svg").decode()
        drawing = drawing[drawing.index("<svg") :]  # inline: no XML prologue or DOCTYPE
    except VirtnetError as exc:  # no Graphviz here: the source, and why
        drawing = f"<p>{esc(str(exc))}</p><pre>{esc(topology_dot(spec, backend))}</pre>"
    header, rows = table_rows(outcomes)
    cells = "".join(f"<th>{esc(h or 'verdict')}</th>" for h in header)
    body = []
    for outcome, row in zip(outcomes, rows, strict=True):
        tds = "".join(f"<td>{esc(c)}</td>" for c in row)
        body.append(f'<tr class="{"ok" if outcome.ok else "bad"}">{tds}</tr>')
    times = ", ".join(f"{k} {v:.1f} s" for k, v in (timings or {}).items())
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>virtnet lab {esc(spec.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>virtnet lab {esc(spec.name)}</h1>",
        f'<p class="summary">{ok}/{len(outcomes)} as expected'
        f"{' (backend ' + esc(backend) + ')' if backend else ''}"
        f"{'; ' + esc(times) if times else ''}; {esc(time.strftime('%Y-%m-%d %H:%M'))}</p>",
        f'<h2>Topology</h2><div class="topology">{drawing}</div>',
        f"<h2>Connectivity</h2><table><thead><tr>{cells}</tr></thead><tbody>",
        *body,
        "</tbody></table></body></html>",
    ]) + "\n"  # fmt: skip
