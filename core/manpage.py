"""Manual pages for ``virtnet(1)`` and ``virtnetd(8)``, written from the commands themselves.

The pages are generated from click's command tree and virtnetd's argparse parser, so an option
that exists is documented and one that is gone is not; ``python -m virtnet.manpage DIR``
writes them, the project keeps them in ``docs/man/`` (installed to ``share/man``, where
``man`` finds them next to the ``bin`` on PATH), and a test fails when they differ from what
the code would write. No date in them: the same code gives the same page.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

#: What both pages say beyond the options.
EXIT_STATUS = [
    ("0", "success"),
    ("1", "the operation failed (the error names what failed; a half-made change is undone)"),
    ("2", "bad usage or invalid input (one line naming the field and why; nothing changed)"),
]
ENVIRONMENT = [
    ("VIRTNET_DAEMON", "auto (use virtnetd when it answers), never (act in-process), require"),
    ("VIRTNET_STATE_DIR", "persistent definitions, as --state-dir"),
    ("VIRTNET_RUN_DIR", "runtime state, as --run-dir"),
    ("VIRTNET_OVSDB", "the Open vSwitch database (unix:PATH) the ovs and ovn backends use"),
    ("VIRTNET_OVN_NB", "OVN's northbound database (tcp:HOST:6641, unix:PATH): OVN networks"),
    ("VIRTNET_OVN_CHASSIS", "this host's OVN chassis name [the local system-id]"),
    ("VIRTNET_OVN_BRIDGE", "OVN's integration bridge [br-int]"),
    ("VIRTNET_OVN_RUNDIR", "where ovn-controller keeps its pid file [$OVN_RUNDIR, /var/run/ovn]"),
    ("VIRTNET_NFT_RAW", "0: send a network's nftables rules through libnftables, not raw [1]"),
]
FILES = [
    ("/var/lib/virtnet", "persistent network definitions (per namespace: netns/NAME)"),
    ("/run/virtnet", "runtime state: journals, dnsmasq files, the virtnetd socket"),
    ("/etc/virtnet/virtnetd.conf", "virtnetd's settings ([virtnetd]; [driver.NAME]: a backend's)"),
]


def roff(text: str) -> str:
    """Text as roff: backslashes escaped, hyphens as minus signs, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())  # fmt: skip


def _header(name: str, section: int, summary: str, version: str) -> list[str]:
    return [
        f'.TH {name.upper()} {section} "" "virtnet {version}" "virtnet manual"',
        ".SH NAME",
        f"{name} \\- {roff(summary)}",
    ]


def _items(title: str, items: list[tuple[str, str]]) -> list[str]:
    lines = [f".SH {title}"]
    for term, text in items:
        lines += [".TP", f"\\fB{roff(term)}\\fR", roff(text)]
    return lines


def _paragraphs(text: str) -> list[str]:
    """A docstring as roff paragraphs (its indentation gone, blank lines as .PP)."""
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n")]
    lines: list[str] = []
    for paragraph in filter(None, paragraphs):
        lines += ([".PP"] if lines else []) + [roff(paragraph)]
    return lines


def _click_options(command: click.Command, ctx: click.Context) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        lines += [".TP", f"\\fB{roff(record[0])}\\fR", roff(record[1] or "")]
    return lines


def _click_commands(group: click.Group, ctx: click.Context, prefix: str) -> list[str]:
    lines = []
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx)
        usage = " ".join(command.collect_usage_pieces(sub))
        lines += [".SS " + roff(f"{prefix}{name} {usage}".strip())]
        lines += _paragraphs(command.help or command.short_help or "")
        if isinstance(command, click.Group):
            lines += _click_commands(command, sub, f"{prefix}{name} ")
        else:
            options = _click_options(command, sub)
            lines += [".RS", *options, ".RE"] if options else []
    return lines


def virtnet_page(version: str) -> str:
    """``virtnet(1)``: the CLI, from its click group."""
    from virtnet.cli import cli

    ctx = click.Context(cli, info_name="virtnet")
    assert isinstance(cli, click.Group)
    lines = _header("virtnet", 1, "virtual networks for VMs and containers", version)
    lines += [".SH SYNOPSIS", "\\fBvirtnet\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]..."]
    lines += [".SH DESCRIPTION", *_paragraphs(cli.help or ""), ".PP", roff(
        "virtnet builds and runs virtual networks from libvirt's network XML, on pluggable "
        "backends (Linux bridge, Open vSwitch, macvtap and those vendors install). With a "
        "virtnetd running for the host, commands go through it; otherwise they act "
        "in-process. The user guide, the XML reference and the security model are in the "
        "project's docs/ directory."
    )]  # fmt: skip
    lines += [".SH OPTIONS", *_click_options(cli, ctx)]
    lines += [".SH COMMANDS", *_click_commands(cli, ctx, "")]
    lines += _items("EXIT STATUS", EXIT_STATUS) + _items("ENVIRONMENT", ENVIRONMENT)
    lines += _items("FILES", FILES)
    lines += [".SH SEE ALSO", "\\fBvirtnetd\\fR(8), \\fBvirsh\\fR(1), \\fBdnsmasq\\fR(8)"]
    return "\n".join(lines) + "\n"


def virtnetd_page(version: str) -> str:
    """``virtnetd(8)``: the daemon, from its argparse parser."""
    from virtnet.daemon.main import _parser

    parser = _parser()
    lines = _header("virtnetd", 8, parser.description or "", version)
    lines += [".SH SYNOPSIS", "\\fBvirtnetd\\fR [\\fIOPTIONS\\fR]"]
    lines += [".SH DESCRIPTION", roff(
        "virtnetd serves virtnet's API for one host network namespace on a unix socket "
        "(JSON-RPC, the protocol in docs/protocol.md): the virtnet CLI and embedding stacks "
        "use it. It recovers from a crash at start-up (half-made changes are undone from their "
        "journals), starts autostart networks, watches the kernel, dnsmasq and Open vSwitch "
        "for drift and repairs it, and stops the host's networks and exits when the served "
        "namespace is deleted. SIGTERM stops it and leaves the networks running."
    )]  # fmt: skip
    lines += [".SH OPTIONS"]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(action.option_strings)
        if action.nargs != 0:
            flags += f" {action.metavar or action.dest.upper()}"
        lines += [".TP", f"\\fB{roff(flags)}\\fR", roff(action.help or "")]
    lines += _items("EXIT STATUS", [*EXIT_STATUS[:1], ("1", "it could not start or serve")])
    lines += _items("FILES", FILES)
    lines += [".SH SEE ALSO", "\\fBvirtnet\\fR(1)"]
    return "\n".join(lines) + "\n"


def pages(version: str) -> dict[str, str]:
    """File name -> page."""
    return {"virtnet.1": virtnet_page(version), "virtnetd.8": virtnetd_page(version)}


def main(argv: list[str] | None = None) -> int:
    from importlib.metadata import version

    target = Path((argv if argv is not None else sys.argv[1:] or ["."])[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, text in pages(version("virtnet")).items():
        (target / name).write_text(text, encoding="utf-8")
        print(target / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
