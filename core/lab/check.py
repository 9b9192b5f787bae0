"""``lab check``: run the expected-connectivity matrix and print it, expected against seen."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from virtnet.errors import Conflict
from virtnet.lab.build import ns_name
from virtnet.lab.record import Record
from virtnet.lab.spec import Expect, LabSpec
from virtnet.testing.guest import resolve
from virtnet.testing.netns import Namespace
from virtnet.testing.traffic import can_tcp

_PORTS = itertools.count(7100)


@dataclass
class Outcome:
    expect: Expect
    address: str
    ping: bool | None = None
    tcp: bool | None = None
    seen: str | None = None
    want_seen: str | None = None
    answers: list[str] | None = None

    @property
    def ok(self) -> bool:
        if self.expect.resolve is not None:
            return (self.expect.answer in (self.answers or [])) is self.expect.reachable
        want = self.expect.reachable
        if self.ping is not None and self.ping != want:
            return False
        if self.tcp is not None and self.tcp != want:
            return False
        return self.want_seen is None or not want or self.seen == self.want_seen


def _ns(lab: str, endpoint: str) -> Namespace:
    role = endpoint.split(".")[0]
    return Namespace(ns_name(lab, "host" if role == "host" else role))


def _ping(src: Namespace, address: str) -> bool:
    for _ in range(2):  # one retry: a first packet may wait for ARP
        done = src.exec("ping", "-c", "1", "-W", "1", address, check=False)
        if done.returncode == 0:
            return True
    return False


def check(spec: LabSpec) -> list[Outcome]:
    record = Record.load(spec.name)
    if record is None or not record.addresses:
        raise Conflict(f"lab {spec.name!r} is not up: run lab up first")
    outcomes = []
    for e in spec.expect:
        address = record.addresses.get(e.target)
        if address is None:
            raise Conflict(f"no address is known for {e.target!r} (did lab up finish?)")
        out = Outcome(e, address)
        src = _ns(spec.name, e.source)
        if e.resolve is not None:
            out.answers = resolve(src, e.resolve, address)
        if e.ping:
            out.ping = _ping(src, address)
        if e.tcp is not None:
            seen = can_tcp(src, _ns(spec.name, e.target), address, port=next(_PORTS), timeout=1.5)
            out.tcp, out.seen = seen is not None, seen
            if e.seen_as is not None:
                out.want_seen = record.addresses.get(e.seen_as)
        outcomes.append(out)
    return outcomes


def table_rows(outcomes: list[Outcome]) -> tuple[list[str], list[list[str]]]:
    """The header and a row per outcome: from, to, address, want, ping, tcp, seen as, verdict."""

    def yn(value: bool | None) -> str:
        return "-" if value is None else "yes" if value else "no"

    header = ["from", "to", "address", "want", "ping", "tcp", "seen as", ""]
    rows = []
    for o in outcomes:
        seen = "-" if o.seen is None else o.seen
        if o.want_seen is not None:
            seen = f"{seen} (want {o.want_seen})"
        if o.expect.resolve is not None:
            got = ",".join(o.answers or []) or "nothing"
            seen = f"{o.expect.resolve} -> {got} (want {o.expect.answer})"
        rows.append([o.expect.source, o.expect.target, o.address,
                     "reach" if o.expect.reachable else "no", yn(o.ping), yn(o.tcp), seen,
                     "ok" if o.ok else "MISMATCH"])  # fmt: skip
    return header, rows


def table(outcomes: list[Outcome], color: bool = False) -> list[str]:
    """Rows for printing, aligned; a mismatch in red on a terminal."""
    header, rows = table_rows(outcomes)
    if color:
        rows = [[*r[:-1], f"\033[1;31m{r[-1]}\033[0m" if r[-1] != "ok" else r[-1]] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append(" ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " " + r[-1])
    return lines
