"""The executor: runs a plan's steps, journalling each step's undo first.

The journal is a JSON-lines file under the run dir, one per network or port. It is the
object's teardown record while the object is up, and its crash-recovery record while it is
being built: whatever a killed process left in a journal is undone by the next one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtnet.backend import Host
from virtnet.errors import OperationFailed, VirtnetError
from virtnet.plan import Plan, Step, Undo, UndoAction

log = logging.getLogger(__name__)


@dataclass
class ApplyContext:
    """What a step or an undo action may use: the host, the core's services, undo actions.

    ``services`` is the object that gives drivers the core's shared datapath services
    (netlink, firewall, dnsmasq, OVSDB); ``scratch`` lets steps of one plan pass values on
    (e.g. an ifindex) without globals.
    """

    host: Host
    undo_actions: dict[str, UndoAction]
    services: Any = None
    #: The ownership label (:class:`virtnet.ownership.Owner`'s ``label``) of the object the
    #: plan builds: steps put it on what they create; while a journal is undone it is the
    #: label of the record being undone, and undo actions remove only what carries it.
    owner: str | None = None
    scratch: dict[str, Any] = field(default_factory=dict)
    #: While a network is being destroyed: its bridge (``Plan.info["bridge"]``), when the
    #: network owns it (``Plan.info["owned"]``). Undo actions of its ports may then leave
    #: what goes with the bridge to its removal (one kernel request, or one OVSDB
    #: transaction, for all of them instead of one each).
    teardown: str | None = None
    #: Waits an undo action may defer to the end of the rollback (e.g. for a signalled
    #: process to exit), so they overlap with the rest of the teardown instead of adding up.
    finally_: list[Callable[[], None]] = field(default_factory=list)
    #: Work a step started and the plan must wait for before it is done (e.g. a daemon's
    #: start-up), run at the end of the plan so it overlaps with the steps after it; a
    #: failure there rolls the whole plan back like a failed step.
    completions: list[Callable[[], object]] = field(default_factory=list)  # results ignored


class Journal:
    """Append-only undo records of one object; each record is on disk before its step runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, undo: Undo) -> None:
        """In the file when this returns; the file stays open until :meth:`close`.

        No fsync: the journal guards against the *process* dying (its write is in the page
        cache and survives that); against the machine dying it is useless, because the
        kernel objects it describes die with the machine and the run dir is emptied at boot.
        """
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o600)
        os.write(self._fd, (json.dumps(undo.as_dict(), sort_keys=True) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def records(self) -> list[Undo]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                try:
                    records.append(Undo.from_dict(json.loads(line)))
                except (ValueError, KeyError):
                    log.warning("%s: skipping a torn journal line %r", self.path, line)
        return records

    def exists(self) -> bool:
        return self.path.exists()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def apply_plan(ctx: ApplyContext, plan: Plan, journal: Journal) -> None:
    """Run ``plan``; on failure undo everything it did (and the journal), then raise.

    Raises :class:`OperationFailed` naming the step that failed; a :class:`VirtnetError`
    raised by a step keeps its class (an ``Unsupported`` stays ``Unsupported``).
    """
    if not ctx.owner:
        raise OperationFailed(
            "a plan runs only for an owner (ApplyContext.owner): its label "
            "is what lets undo tell virtnet's objects from namesakes"
        )
    undos = [step.undo() for step in plan]
    for step, undo in zip(plan, undos, strict=True):
        if undo is not None and undo.action not in ctx.undo_actions:
            raise OperationFailed(
                f"step {step.describe()!r} needs undo action {undo.action!r}, which no plugin "
                "registers (virtnet_undo_actions)"
            )
    current: Step | None = None
    fault = _fault(ctx)
    try:
        for index, (current, undo) in enumerate(zip(plan, undos, strict=True)):
            if index == fault[1]:
                _inject(fault[0], index, current)
            current.check(ctx)
            if undo is not None:
                journal.append(dataclasses.replace(undo, owner=ctx.owner))
            log.debug("apply: %s", current.describe())
            current.apply(ctx)
        current = None
        _complete(ctx)
        journal.close()
    except BaseException as exc:
        _settle(ctx)  # e.g. let a daemon being started finish, so its undo finds it
        problems = rollback(ctx, journal)
        _wait_for_retired_links(ctx)
        if isinstance(exc, VirtnetError):
            if problems:
                exc.add_note("rollback: " + "; ".join(problems))
            raise
        if not isinstance(exc, Exception):
            raise
        extra = f" (rollback problems: {'; '.join(problems)})" if problems else ""
        what = current.describe() if current is not None else "finishing the plan"
        raise OperationFailed(f"{what}: {exc}{extra}") from exc


#: The test seam of ``virtnet conformance``: ``network:raise:3`` makes the plan of a network
#: fail right before its step 3 (counting from 0) as a failing step would; ``port:kill:2``
#: kills the process (SIGKILL) right before a port plan's step 2, as a crash would;
#: ``port:raise:2@3`` does so in the process's third port plan only (a bulk operation failing
#: half-way). Read on every plan; unset, it costs one dictionary look-up.
FAULT_ENV = "VIRTNET_FAULT"
_plans_seen = {"network": 0, "port": 0}


def _fault(ctx: ApplyContext) -> tuple[str, int | None]:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return "", None
    target, _, rest = spec.partition(":")
    kind, _, index = rest.partition(":")
    of = "port" if "/port=" in (ctx.owner or "") else "network"
    if target != of or kind not in ("raise", "kill"):
        return "", None
    _plans_seen[of] += 1
    index, _, nth = index.partition("@")
    if nth and int(nth) != _plans_seen[of]:
        return "", None
    return kind, int(index)


def _inject(kind: str, index: int, step: Step) -> None:
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OperationFailed(f"injected fault before step {index} ({step.describe()})")


def _complete(ctx: ApplyContext) -> None:
    while ctx.completions:
        ctx.completions.pop(0)()


def _settle(ctx: ApplyContext) -> None:
    """Run what is left of the completions, ignoring their failures (we are failing)."""
    while ctx.completions:
        try:
            ctx.completions.pop(0)()
        except Exception as exc:
            log.debug("completion during rollback: %s", exc)


def _wait_for_retired_links(ctx: ApplyContext) -> None:
    """A failed plan's undo retires the links it made (:mod:`virtnet.services.reaper`): wait
    until they are deleted, so the host is exactly as before when the failure is reported.
    A success never waits for its deletions."""
    settle = getattr(ctx.services, "settle", None)  # the core's services (a driver's: none)
    if callable(settle):
        settle()


def rollback(ctx: ApplyContext, journal: Journal) -> list[str]:
    """Undo every journalled record, newest first; returns the problems met (and logs them).

    Undo keeps going past a failed record: leaving the rest of the objects behind would be
    worse than a partial teardown. The journal is removed at the end.
    """
    return rollback_all(ctx, [journal])


def rollback_all(ctx: ApplyContext, journals: list[Journal]) -> list[str]:
    """:func:`rollback` of several journals in one context, in the order given (a network's
    ports, then the network): what the undo actions defer to the end (``ctx.finally_``:
    waits, batched removals) is done once for all of them."""
    problems = []
    building = ctx.owner
    for journal in journals:
        for undo in reversed(journal.records()):
            action = ctx.undo_actions.get(undo.action)
            if action is None:
                problems.append(f"no undo action {undo.action!r} is registered")
                continue
            ctx.owner = undo.owner
            try:
                action(ctx, undo.args)
            except Exception as exc:  # keep undoing the rest
                problems.append(f"{undo.action} {undo.args}: {exc}")
                log.warning("undo %s %s failed: %s", undo.action, undo.args, exc)
    ctx.owner = building
    while ctx.finally_:
        try:
            ctx.finally_.pop(0)()
        except Exception as exc:
            problems.append(f"finishing the rollback: {exc}")
    for journal in journals:
        journal.remove()
    return problems


def repair_plan(ctx: ApplyContext, plan: Plan) -> list[str]:
    """Replay ``plan`` on a live object with :meth:`Step.repair`; keeps going past a step that
    fails and returns what could not be restored."""
    problems = []
    for step in plan:
        try:
            step.repair(ctx)
        except Exception as exc:
            problems.append(f"{step.describe()}: {exc}")
            log.warning("repair: %s failed: %s", step.describe(), exc)
    try:
        _complete(ctx)
    except Exception as exc:
        _settle(ctx)
        problems.append(f"finishing the repair: {exc}")
    return problems
